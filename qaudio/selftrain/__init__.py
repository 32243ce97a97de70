"""Self-training from unlabeled audio: pseudo-labels, domain-matched synthetic speech, retraining
in measured rounds (``qaudio self-train``). See :mod:`qaudio.selftrain.rounds` for the loop.

    from qaudio.selftrain import SelfTrainConfig, self_train
    best = self_train(SelfTrainConfig(model="runs/demo/model", unlabeled="recordings/",
                                       dev="dev.jsonl", rounds=3, out="runs/self-train"))
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .config import SelfTrainConfig


def self_train(cfg: SelfTrainConfig, synthesizer: str | Callable | None = None) -> Path:
    """Run (or continue) self-training; see :func:`qaudio.selftrain.rounds.self_train`."""
    from .rounds import self_train as run

    return run(cfg, synthesizer)


__all__ = ["SelfTrainConfig", "self_train"]
