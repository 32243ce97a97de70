"""``qaudio run``: run a model on audio files and print its answers.

The command line is :class:`RunConfig` (through :mod:`qaudio.flags`): one flag per field. What
to ask is :class:`QueryOptions`; :func:`query_from_args` turns it into a
:class:`~qaudio.task.Request` through :func:`qaudio.infer.request_from_fields`, the mapping the
server's ``/v1/generate`` uses too. The library part
(loading, batching, answers) is :mod:`qaudio.infer`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from . import degeneration, flags
from .dtypes import DTYPE_NAMES
from .flags import option
from .infer import CAPTION_STYLES, Request, Result, load, request_from_fields
from .specs import get_task, task_names


@dataclass
class QueryOptions:
    """What to ask of each clip: a task with its options, or a raw tagged prompt."""

    task: str = option("asr", f"{', '.join(task_names())}, or a task .py file (default: asr)")
    lang: str | None = option(None, "spoken language (default: en; the model does not detect it)")
    to: str | None = option(None, "output language, for translation (s2tt)")
    timestamps: bool = option(False, "word timestamps (asr)")
    question: str | None = option(None, "the question (aqa)")
    caption_style: str = option("clotho", "caption style (aac)", choices=tuple(CAPTION_STYLES))
    labels: str | None = option(None, "comma-separated label set to choose from (classification)")
    prompt: str | None = option(None, "a raw tagged prompt instead of --task")


@dataclass
class ModelOptions:
    """How the model is loaded and how long it may answer (``qaudio run``, ``eval`` and ``serve``)."""

    device: str | None = option(None, "cpu, cuda, cuda:1, ... (default: cuda if available)")
    dtype: str | None = option(None, "weights dtype (default: float32)", choices=tuple(DTYPE_NAMES))
    max_new_tokens: int | None = option(None, "generation cap (default: by task)")
    quantize: str | None = option(
        None,
        "quantize the LLM's Linear layers for inference (qaudio.model.quantize; int4 needs the compress extra)",
        choices=("int8", "int4"),
    )

    def __post_init__(self) -> None:
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class GuardOptions:
    """What to do with degenerate answers (``qaudio run`` and ``qaudio eval``)."""

    on_degenerate: str = option(
        "keep",
        "keep: flag degenerate answers (loops, echoes, cut-offs); retry: decode them "
        "again with a repetition penalty and no repeated 4-grams, flagged 'retried' "
        "(default: keep)",
        choices=degeneration.ON_DEGENERATE,
    )
    speech_check: bool = option(
        True,
        "transcribe clips even when the voice-activity detector "
        "finds no speech in them (silent clips are still answered empty)",
    )


@dataclass
class RunConfig(GuardOptions, ModelOptions, QueryOptions):
    """``qaudio run``'s options."""

    model: str = option("", "a saved model directory (or hub id)", positional=True)
    files: list[str] = option(
        help="audio files (wav, flac, ogg, mp3, ...)", positional=True, metavar="FILE", default_factory=list
    )
    json: bool = option(False, "print one JSON object per file")
    batch_size: int = option(8, "windows per forward pass")
    progress: bool = option(True, "no progress bar")
    vad: bool = option(
        False,
        "cut each file at the pauses a voice-activity detector hears and answer each "
        "utterance with its times (needs silero-vad)",
    )
    stream: bool = option(
        False,
        "transcribe as a live stream: partial transcripts while an utterance lasts, a final "
        "one with word times at its end",
    )
    realtime: bool = option(False, "with --stream: feed the file at recording pace")

    def __post_init__(self) -> None:
        ModelOptions.__post_init__(self)
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.task not in task_names() and not self.task.endswith(".py"):
            raise ValueError(
                f"unknown task {self.task!r}; valid choices: {', '.join(task_names())}, or a task .py file"
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_arguments(parser, RunConfig)


def query_from_args(args: QueryOptions) -> Request:
    """The request the command-line fields ask for (:func:`qaudio.infer.request_from_fields`)."""
    return request_from_fields(
        task=get_task(args.task) if not args.prompt else None,
        prompt=args.prompt,
        lang=args.lang,
        to=args.to,
        timestamps=args.timestamps,
        question=args.question,
        caption_style=args.caption_style,
        labels=args.labels,
    )


def _print_result(path: str, result: Result, as_json: bool, many: bool) -> None:
    if as_json:
        print(json.dumps({"file": path, **result.to_dict()}, ensure_ascii=False), flush=True)
        return
    if not result.ok:
        print(f"qaudio run: {result.error}", file=sys.stderr)
        return
    print(f"{path}: {result.text}" if many else result.text, flush=True)
    if result.flags:
        meaning = "; ".join(f"{f}: {degeneration.FLAGS[f]}" for f in result.flags)
        print(f"qaudio run: {path}: flagged {meaning}", file=sys.stderr)
    for w in result.words or []:
        print(f"  {w.start:8.2f} {w.end:8.2f}  {w.word}")


def main(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    cfg = flags.from_args(RunConfig, args)
    model = load(
        cfg.model,
        device=cfg.device,
        dtype=cfg.dtype,
        max_new_tokens=cfg.max_new_tokens,
        quantize=cfg.quantize,
        on_degenerate=cfg.on_degenerate,
        detect_no_speech=cfg.speech_check,
    )
    query = query_from_args(cfg)
    if cfg.vad or cfg.stream:
        from .realtime import run_cli

        return run_cli(model, cfg, query)
    many = len(cfg.files) > 1
    failed = 0
    with tqdm(total=len(cfg.files), disable=not cfg.progress or not many, unit="file") as bar:
        for k in range(0, len(cfg.files), cfg.batch_size):
            paths = cfg.files[k : k + cfg.batch_size]
            for path, result in zip(paths, model.run(paths, query, batch_size=cfg.batch_size)):
                failed += not result.ok
                _print_result(path, result, cfg.json, many)
            bar.update(len(paths))
    return 1 if failed else 0
