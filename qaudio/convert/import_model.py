"""``qaudio import-model FORMAT SRC OUT``: a released audio-language model as a saved qaudio model.

SRC is a hub id or a local directory (one code path: transformers reads both). OUT is then a
model directory like any other: ``qaudio run``, ``eval``, ``serve`` and ``train --model OUT``
(fine-tuning, with the ``trainable`` chosen here) take it.
"""

from __future__ import annotations

import argparse

FORMATS = ("qwen2-audio",)  # the released formats this command reads
DTYPES = ("float32", "bfloat16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, help="the released model's format")
    parser.add_argument("source", help="hub id (e.g. Qwen/Qwen2-Audio-7B-Instruct) or local directory of the model")
    parser.add_argument("output", help="directory to write the qaudio model to")
    parser.add_argument(
        "--prompt-style",
        default="chat",
        choices=("chat", "natural"),
        help="chat: Qwen2-Audio-Instruct's chat turns; natural: the base model's instructions",
    )
    parser.add_argument(
        "--train-encoder",
        default="frozen",
        choices=("frozen", "full", "lora"),
        help="what trains when the imported model is fine-tuned: the audio tower",
    )
    parser.add_argument(
        "--train-llm",
        default="lora",
        choices=("frozen", "full", "lora"),
        help="what trains when the imported model is fine-tuned: the LLM",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=DTYPES,
        help="dtype to load and write the weights in (bfloat16 halves the memory of a 7B import)",
    )


def main(args: argparse.Namespace) -> int:
    from ..config import TrainableConfig
    from ..dtypes import torch_dtype
    from .qwen2_audio import import_qwen2_audio

    trainable = TrainableConfig(encoder=args.train_encoder, projector=True, llm=args.train_llm)
    model = import_qwen2_audio(args.source, args.prompt_style, trainable, dtype=torch_dtype(args.dtype))
    out = model.save_pretrained(args.output)
    counts = model.parameter_counts()
    print(
        f"wrote {out}: {counts['total'] / 1e6:.1f} M parameters ({counts['trainable'] / 1e6:.2f} M train), "
        f"prompt style {args.prompt_style}"
    )
    return 0
