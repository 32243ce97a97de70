"""``qaudio self-train``: one flag per :class:`~qaudio.selftrain.config.SelfTrainConfig` field."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from .config import SelfTrainConfig, flag


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _type(f: dataclasses.Field) -> Callable[[str], Any]:
    text = str(f.type)
    for prefix, kind in (("bool", _bool), ("int", int), ("float", float)):
        if text.startswith(prefix):
            return kind
    return str


REQUIRED = ("model", "unlabeled", "dev")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(SelfTrainConfig):
        kind = _type(f)
        extra = {"required": True} if f.name in REQUIRED else {"default": f.default}
        if kind is _bool:
            parser.add_argument(
                f"--{flag(f.name)}",
                dest=f.name,
                nargs="?",
                const=True,
                type=_bool,
                metavar="BOOL",
                help=f"{f.metadata['help']} (default: {f.default})",
                **extra,
            )
            parser.add_argument(f"--no-{flag(f.name)}", dest=f.name, action="store_false", help=argparse.SUPPRESS)
        else:
            default = "" if f.name in REQUIRED else f" (default: {f.default})"
            parser.add_argument(
                f"--{flag(f.name)}",
                dest=f.name,
                type=kind,
                choices=f.metadata["choices"],
                help=f"{f.metadata['help']}{default}",
                **extra,
            )


def main(args: argparse.Namespace) -> int:
    from .rounds import self_train

    cfg = SelfTrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SelfTrainConfig)})
    best = self_train(cfg)
    print(f"best model: {best}  (rounds: {cfg.out}/rounds.md)")
    return 0
