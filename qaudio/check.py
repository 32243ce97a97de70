"""``qaudio check``: does batching or precision change your model's answers?

Batched decoding pads clips to a common length; lower precision rounds differently; either
can flip a greedy choice on a near-tie, and a flipped token changes the rest of the answer.
The test suite asserts batch invariance on tiny models; this command shows it on the user's
own model and machine: it runs the same clips at every batch size and dtype and lists every
answer that differs from the batch-1 float32 answer, with the clip and both outputs.

Clips: ``--files``, or (default) English sentences of different lengths spoken by eSpeak NG
(:mod:`qaudio.synth.espeak`), as many as the largest batch, so every batch holds clips of
unequal length. Exit status 1 when an answer differs, so it can gate a deployment.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE, load_audio
from .dtypes import canonical_dtype
from .infer import Pipeline, load, request_from_fields
from .specs import get_task, task_names
from .task import Request

REFERENCE = (1, "float32")  # (batch size, dtype) every other setting is compared against
SENTENCES = (  # lengths from one to five seconds, so batches pad
    "Hello.",
    "The weather is nice today.",
    "Please close the door behind you when you leave.",
    "A quick brown fox jumps over the lazy dog near the river bank.",
    "Seven small boats sailed slowly across the quiet lake before the storm arrived in the evening.",
    "Turn left.",
    "My brother bought three red apples and a loaf of bread at the market.",
    "Numbers like twenty one and forty two are easy to say but hard to hear in a noisy room.",
)
VOICES = ("en", "en+m3", "en+f2", "en+m1")


@dataclass
class Difference:
    clip: str  # file name, or a description of the synthesized clip
    batch_size: int
    dtype: str
    reference: str  # the batch-1 float32 answer (generated text with tags)
    output: str  # the answer at this setting


def speech_clips(n: int) -> list[tuple[str, np.ndarray]]:
    """``n`` eSpeak NG clips of the built-in sentences (different lengths and voices)."""
    from .synth.espeak import synthesize

    clips = []
    for k in range(n):
        text, voice = SENTENCES[k % len(SENTENCES)], VOICES[(k // len(SENTENCES)) % len(VOICES)]
        clips.append((f"espeak {voice}: {text!r}", synthesize(text, voice=voice, rate=160 + 5 * (k % 5)).samples))
    return clips


def compare(
    models: dict[str, Pipeline], clips: Sequence[tuple[str, np.ndarray]], query: Request, batch_sizes: Sequence[int]
) -> tuple[dict, list[Difference]]:
    """Answers at every (batch size, dtype) -> (raw answers by setting, differences from the reference).

    ``models`` maps a dtype name to the model loaded in it; float32 must be among them.
    """
    if REFERENCE[1] not in models:
        raise ValueError("the reference is the float32 model: include float32 among the dtypes")
    audios = [(samples, SAMPLE_RATE) for _, samples in clips]
    answers = {}
    for dtype, model in models.items():
        for bs in sorted(set(batch_sizes) | ({REFERENCE[0]} if dtype == REFERENCE[1] else set())):
            answers[(bs, dtype)] = [
                r.raw if r.ok else f"error: {r.error}" for r in model.run(audios, query, batch_size=bs)
            ]
    reference = answers[REFERENCE]
    diffs = [
        Difference(name, bs, dtype, ref, out)
        for (bs, dtype), outs in answers.items()
        if (bs, dtype) != REFERENCE
        for (name, _), ref, out in zip(clips, reference, outs)
        if out != ref
    ]
    return answers, diffs


def render(answers: dict, diffs: list[Difference], n_clips: int) -> str:
    lines = [f"{'batch':>5} {'dtype':<9} differing answers (of {n_clips}, against batch 1 float32)"]
    for bs, dtype in sorted(answers, key=lambda k: (k[1], k[0])):
        if (bs, dtype) != REFERENCE:
            lines.append(f"{bs:>5} {dtype:<9} {sum(d.batch_size == bs and d.dtype == dtype for d in diffs)}")
    for d in diffs:
        lines += [
            "",
            f"{d.clip} (batch {d.batch_size}, {d.dtype}):",
            f"  batch 1 float32: {d.reference!r}",
            f"  batch {d.batch_size} {d.dtype}: {d.output!r}",
        ]
    lines += [
        "",
        "qaudio check: every answer matches batch 1 float32"
        if not diffs
        else f"qaudio check: {len(diffs)} answer(s) differ from batch 1 float32 "
        "(expected on near-ties in bf16/fp16; in float32 they point to a padding or masking bug)",
    ]
    return "\n".join(lines)


# ---- The command -------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--batch-sizes must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"--batch-sizes must be positive integers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a saved model directory (or hub id)")
    parser.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes (default 1,8,32)")
    parser.add_argument(
        "--dtype", default="fp32,bf16", help="comma-separated dtypes: fp32, bf16, fp16 (default fp32,bf16)"
    )
    parser.add_argument(
        "--files",
        nargs="+",
        default=None,
        metavar="FILE",
        help="audio files to check (default: eSpeak NG sentences, as many as the largest batch)",
    )
    parser.add_argument("--task", default="asr", help=f"{', '.join(task_names())} (default: asr)")
    parser.add_argument("--lang", default=None, help="spoken language (default: en)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="generation cap (default: by task)")


def main(args: argparse.Namespace, loader: Callable[..., Pipeline] = load) -> int:
    batch_sizes = _int_list(args.batch_sizes)
    dtypes = []
    for name in (x.strip() for x in args.dtype.split(",") if x.strip()):
        dtypes.append(canonical_dtype(name))
    if REFERENCE[1] not in dtypes:
        dtypes.insert(0, REFERENCE[1])  # the reference is always run
    if args.files:
        clips = [(path, load_audio(path, allow_silence=True).samples) for path in args.files]
    else:
        clips = speech_clips(max(batch_sizes))
    models = {}
    for dtype in dict.fromkeys(dtypes):
        models[dtype] = loader(args.model, device=args.device, dtype=dtype, max_new_tokens=args.max_new_tokens)
    query = request_from_fields(get_task(args.task), lang=args.lang)
    answers, diffs = compare(models, clips, query, batch_sizes)
    print(render(answers, diffs, len(clips)))
    return 1 if diffs else 0
