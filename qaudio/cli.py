"""The ``qaudio`` command: one subcommand per job.

Each job's module defines ``add_arguments(parser)`` and ``main(args) -> int``; it is imported
only when its subcommand runs, so ``qaudio prompt`` starts without importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    # name: (module, one-line help)
    "prompt": ("qaudio.prompt", "print the exact tagged prompt for a task request"),
    "synth": ("qaudio.synth.cli", "generate the synthetic multitask corpus (offline TTS and sound events)"),
    "tts-augment": ("qaudio.synth.augment", "turn a file of sentences into ASR training examples with TTS"),
    "data": ("qaudio.recipe", "write a corpus recipe's examples as a JSONL manifest"),
    "import-whisper": (
        "qaudio.convert.import_whisper",
        "convert a CTranslate2/faster-whisper model to a Hugging Face directory",
    ),
    "import-model": ("qaudio.convert.import_model", "turn a released model (Qwen2-Audio) into a qaudio model"),
    "export": ("qaudio.convert.export", "write a qaudio model in a released model's format (Qwen2-Audio)"),
    "train": ("qaudio.train", "train a model (same as `accelerate launch -m qaudio.train`)"),
    "distill": ("qaudio.training.distill", "train a smaller student on a saved teacher's token distributions"),
    "self-train": ("qaudio.selftrain.cli", "adapt a model to unlabeled audio: pseudo-labels, matched speech, rounds"),
    "eval": ("qaudio.evaluate", "run an evaluation suite and write a multi-benchmark report"),
    "score": ("qaudio.score", "score a JSONL of predictions and references with qaudio's metrics"),
    "run": ("qaudio.run", "run a model on audio files"),
    "serve": ("qaudio.serve", "serve a model over HTTP (OpenAI-compatible audio routes)"),
    "doctor": ("qaudio.doctor", "check the environment (versions, GPU/bf16, Java, espeak, weights, disk) with fixes"),
    "check": (
        "qaudio.check",
        "run the same clips at several batch sizes and dtypes and report any answer that changes",
    ),
    "plan": ("qaudio.plan", "predict peak training and inference memory and the largest batch that fits"),
    "push": ("qaudio.hub", "upload a saved model to the Hugging Face hub with a generated model card"),
    "ui": ("qaudio.ui", "a web page to try a model (Gradio)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qaudio", description="Multitask audio-language models with Qwen-Audio task tags."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help()
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nqaudio: unknown command {argv[0]!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        return 0
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"qaudio {name}", description=COMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        # Errors a user can act on (bad flags, unknown names, missing files): one clear line.
        print(f"qaudio {name}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
