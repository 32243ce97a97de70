"""``qaudio prompt``: print the exact prompt a task request produces (a debugging aid)."""

from __future__ import annotations

import argparse

from .data import Example
from .specs import get_task, registry
from .tags import PROMPT_STYLES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help=f"task name ({', '.join(registry('tasks'))}) or a task .py file")
    parser.add_argument("--audio-lang", default="en", help="language of the speech (unknown for non-speech)")
    parser.add_argument("--text-lang", default=None, help="language of the output text (default: the audio language, or en)")
    parser.add_argument("--timestamps", action="store_true", help="ask for word timestamps")
    parser.add_argument("--question", default=None, help="the question, for audio question answering")
    parser.add_argument("--instruction", default=None, help="another output instruction of the same task, e.g. caption_audiocaps")
    parser.add_argument("--style", default="tags", choices=tuple(PROMPT_STYLES),
                        help="tag prompt, natural-language prompt, or Qwen2-Audio-Instruct chat turns")


def prompt_for(task_name: str, audio_lang: str = "en", text_lang: str | None = None, timestamps: bool = False,
               question: str | None = None, instruction: str | None = None, style: str = "tags") -> str:
    """The prompt string for a request, built exactly as training and inference build it."""
    task = get_task(task_name)
    if text_lang is None:
        text_lang = audio_lang if audio_lang != "unknown" else "en"
    request = Example(id="prompt", audio="-", duration=1.0, task=task.name, audio_lang=audio_lang,
                      text_lang=text_lang, question=question, meta={"instruction": instruction} if instruction else {})
    if timestamps and not task.timestamps:
        from dataclasses import replace

        task = replace(task, timestamps=True)
    return task.prompt(request, style)


def main(args: argparse.Namespace) -> int:
    print(prompt_for(args.task, args.audio_lang, args.text_lang, args.timestamps, args.question, args.instruction, args.style))
    return 0
