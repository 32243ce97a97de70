"""``qaudio prompt``: print the exact prompt a task request produces (a debugging aid).

The request goes through :meth:`qaudio.task.Task.request` and :meth:`qaudio.task.Task.prompt`,
the very functions training and inference call, so the printed prompt is the one they feed
the model, and a request inference refuses is refused here with the same error.
"""

from __future__ import annotations

import argparse

from .specs import get_task, task_names
from .tags import PROMPT_STYLES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help=f"task name ({', '.join(task_names())}) or a task .py file")
    parser.add_argument(
        "--audio-lang", default=None, help="language of the speech (default: en; non-speech tasks always say unknown)"
    )
    parser.add_argument(
        "--text-lang",
        default=None,
        help="language of the output text (default: the audio language, or en for non-speech audio)",
    )
    parser.add_argument("--timestamps", action="store_true", help="ask for word timestamps (asr: runs srwt)")
    parser.add_argument("--question", default=None, help="the question, for audio question answering")
    parser.add_argument(
        "--instruction", default=None, help="another output instruction of the same task, e.g. caption_audiocaps"
    )
    parser.add_argument(
        "--style",
        default="tags",
        choices=tuple(PROMPT_STYLES),
        help="tag prompt, natural-language prompt, or Qwen2-Audio-Instruct chat turns",
    )


def prompt_for(
    task_name: str,
    audio_lang: str | None = None,
    text_lang: str | None = None,
    timestamps: bool = False,
    question: str | None = None,
    instruction: str | None = None,
    style: str = "tags",
) -> str:
    """The prompt string for a request, built exactly as training and inference build it."""
    request = get_task(task_name).request(
        audio_lang=audio_lang, text_lang=text_lang, timestamps=timestamps, question=question, instruction=instruction
    )
    return request.prompt(style)


def main(args: argparse.Namespace) -> int:
    print(
        prompt_for(
            args.task, args.audio_lang, args.text_lang, args.timestamps, args.question, args.instruction, args.style
        )
    )
    return 0
