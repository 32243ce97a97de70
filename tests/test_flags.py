"""Config dataclasses as command lines (qaudio.flags): run, eval and serve take their flags from them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

import pytest

from qaudio import flags
from qaudio.flags import option


@dataclass
class Toy:
    inputs: list[str] = option(help="files", positional=True, default_factory=list)
    rate: float = 0.5  # how fast, in Hz
    mode: Literal["fast", "slow"] = "fast"  # which way
    name: str | None = option(None, "a name", choices=("a", "b"))
    cache: bool = True  # keep a cache
    verbose: bool = False  # say more
    out: str = option("", "where to write", required=True)


def parse(cls, argv, **kwargs):
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser, cls, **kwargs)
    return parser, parser.parse_args(argv)


def test_types_choices_help_and_switches_come_from_the_dataclass():
    parser, args = parse(
        Toy, ["x.wav", "y.wav", "--rate", "2", "--mode", "slow", "--no-cache", "--verbose", "--out", "o"]
    )
    assert flags.from_args(Toy, args) == Toy(["x.wav", "y.wav"], 2.0, "slow", None, False, True, "o")
    text = parser.format_help()
    assert "how fast, in Hz" in text and "which way" in text  # the field's comment is its help
    assert "--no-cache" in text and "keep a cache" in text and "--verbose" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["x.wav", "--mode", "medium", "--out", "o"])  # Literal -> choices
    with pytest.raises(SystemExit):
        parser.parse_args(["x.wav", "--name", "c", "--out", "o"])  # metadata choices
    with pytest.raises(SystemExit):
        parser.parse_args(["x.wav"])  # --out is required on the command line


def test_given_only_and_bool_values_as_training_uses_them():
    _, args = parse(Toy, ["x", "--cache", "false", "--out", "o"], given_only=True, bool_values=True)
    assert vars(args) == {"inputs": ["x"], "cache": False, "out": "o"}  # untyped flags are absent
    assert flags.from_args(Toy, args) == Toy(["x"], cache=False, out="o")


def test_run_flags_are_unchanged_and_fill_run_config():
    from qaudio.run import RunConfig, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "model",
            "a.wav",
            "b.wav",
            "--task",
            "s2tt",
            "--to",
            "de",
            "--timestamps",
            "--json",
            "--no-progress",
            "--no-speech-check",
            "--on-degenerate",
            "retry",
            "--dtype",
            "bf16",
            "--batch-size",
            "2",
            "--max-new-tokens",
            "5",
            "--vad",
        ]
    )
    cfg = flags.from_args(RunConfig, args)
    assert (cfg.model, cfg.files, cfg.task, cfg.to, cfg.timestamps, cfg.json) == (
        "model",
        ["a.wav", "b.wav"],
        "s2tt",
        "de",
        True,
        True,
    )
    assert (
        cfg.progress,
        cfg.speech_check,
        cfg.on_degenerate,
        cfg.dtype,
        cfg.batch_size,
        cfg.max_new_tokens,
        cfg.vad,
    ) == (False, False, "retry", "bf16", 2, 5, True)
    assert flags.from_args(RunConfig, parser.parse_args(["m", "a.wav"])) == RunConfig(model="m", files=["a.wav"])
    with pytest.raises(ValueError, match="--batch-size must be at least 1"):
        flags.from_args(RunConfig, parser.parse_args(["m", "a.wav", "--batch-size", "0"]))


def test_serve_and_eval_flags_default_to_their_configs():
    from qaudio import realtime, serve
    from qaudio.evaluate import EvalConfig
    from qaudio.evaluate import add_arguments as add_eval_arguments

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(["m", "--max-batch", "4", "--batch-window-ms", "2.5"])
    assert flags.from_args(serve.ServeConfig, args) == serve.ServeConfig(max_batch=4, batch_window_ms=2.5)
    assert flags.from_args(serve.ServeConfig, parser.parse_args(["m"])) == serve.ServeConfig()
    assert realtime.config_from_args(parser.parse_args(["m", "--max-sessions", "2"])) == realtime.RealtimeConfig(
        max_sessions=2
    )
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    cfg = flags.from_args(
        EvalConfig, parser.parse_args(["--model", "m", "--suite", "s", "--no-peers", "--quiet", "--out", "o"])
    )
    assert cfg == EvalConfig(model="m", suite="s", peers=False, quiet=True, out="o")
    with pytest.raises(ValueError, match="--limit must be a positive number"):
        EvalConfig(limit=0)
