"""``qaudio export MODEL --format FORMAT OUT``: a saved qaudio model in a released model's format.

``qwen2-audio`` writes a standard ``Qwen2AudioForConditionalGeneration`` directory (weights,
config, generation config, processor files), LoRA merged, that transformers and vLLM load; a
model whose parts do not map onto Qwen2-Audio's is refused with the reason.
"""

from __future__ import annotations

import argparse

FORMATS = ("qwen2-audio",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a saved qaudio model directory (or hub id)")
    parser.add_argument("output", help="directory to write the exported model to")
    parser.add_argument("--format", required=True, choices=FORMATS, help="the format to write")


def main(args: argparse.Namespace) -> int:
    from ..model.audio_lm import AudioLM
    from .qwen2_audio import export_qwen2_audio

    out = export_qwen2_audio(AudioLM.from_pretrained(args.model), args.output)
    print(f"wrote {out} ({args.format})")
    return 0
