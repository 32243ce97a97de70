"""Facts asked in one place: the data root, dtype names, usable cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qaudio.config import resolve_data_root
from qaudio.dtypes import canonical_dtype, torch_dtype
from qaudio.hardware import usable_cores


def test_data_root_precedence_and_every_user_asks_the_same_place(monkeypatch):
    from qaudio.suite import Benchmark
    from qaudio.training.corpus import default_root

    monkeypatch.delenv("QAUDIO_DATA", raising=False)
    assert resolve_data_root() == Path("data") and default_root("librispeech") == Path("data/librispeech")
    monkeypatch.setenv("QAUDIO_DATA", "~/corpora")
    home = Path(os.path.expanduser("~/corpora"))
    assert resolve_data_root() == home and resolve_data_root("/x") == Path("/x")
    assert default_root("my_corpus.py") == home / "my_corpus"  # training's default corpus folder
    bench = Benchmark(name="b", recipe="manifest", root="synthetic", split="test", task="asr")
    assert bench.root_path() == home / "synthetic"  # evaluation's


def test_dtype_names():
    import torch

    assert [canonical_dtype(n) for n in ("fp32", "bf16", "float16")] == ["float32", "bfloat16", "float16"]
    assert torch_dtype("bf16") is torch.bfloat16 and torch_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'float8'; valid choices: float32, fp32"):
        torch_dtype("float8")


def test_usable_cores_is_the_affinity_mask():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert usable_cores() == expected >= 1
