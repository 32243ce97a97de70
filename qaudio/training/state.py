"""Where a training run stands: the one object a checkpoint saves besides the model, the
optimizer, the scheduler, the scaler and the RNGs (which accelerate saves itself).

:class:`TrainState` is registered with ``accelerator.register_for_checkpointing``, so
``accelerator.save_state`` writes its :meth:`state_dict` and ``load_state`` restores it. The
main process's state is the one saved, as before: every process resumes from the same step,
data position, dev history and bad-data log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .batching import Batch


import time
from dataclasses import dataclass, field

from .bad_data import BadDataLog
from .losses import LossMeter

SEEN_KEYS = ("examples", "audio_seconds", "train_seconds")  # what the run's summary counts over every resume


@dataclass
class TrainState:
    bad: BadDataLog  # skipped examples; its dict is shared with the collators (loaded in place)
    meter: LossMeter  # the open logging window (per-task loss sums, throughput sums)
    world_size: int = 1  # processes that deal out the data stream; a resume must keep it
    step: int = 0  # optimizer steps done
    position: int = 0  # global micro-batches drawn from the sampler's stream
    max_steps: int = 0  # the schedule's length; a deadline may lower it
    planned_steps: int = 0  # the schedule's length as laid out (the summary reports a cut)
    probe_step_s: float | None = None  # seconds per step the probe measured (None: no probe)
    dev_history: dict[str, dict[str, float]] = field(default_factory=dict)  # str(step) -> task -> dev loss
    # --dev-scores: str(step) -> group -> {metric, value, unit, higher_is_better, profile, n} (.dev_scores)
    dev_scores: dict[str, dict[str, dict]] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SEEN_KEYS, 0))
    bad_in_a_row: int = 0  # non-finite steps since the last good one (not saved: a checkpoint follows a good step)
    run_t0: float = field(default_factory=time.perf_counter)  # when this process's loop began (train_seconds)

    def count(self, batch: Batch, losses: torch.Tensor, tokens: torch.Tensor) -> None:
        """A micro-batch that trained: its per-example loss sums (B,) and target tokens (B,)."""
        self.meter.add(batch.tasks, losses, tokens)
        self.meter.extra["audio_seconds"] += batch.audio_seconds
        self.meter.extra["examples"] += len(batch.ids)
        self.seen["examples"] += len(batch.ids)
        self.seen["audio_seconds"] += batch.audio_seconds

    def seen_now(self) -> dict[str, float]:
        """What this process trained on over every resume, with this run's time so far."""
        return {**self.seen, "train_seconds": self.seen["train_seconds"] + time.perf_counter() - self.run_t0}

    def header(self) -> dict:
        """What a resume must know before the model and the scheduler exist (``state.json``)."""
        return {"step": self.step, "max_steps": self.max_steps, "world_size": self.world_size, "time": time.time()}

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "position": self.position,
            "max_steps": self.max_steps,
            "planned_steps": self.planned_steps,
            "probe_step_s": self.probe_step_s,
            "world_size": self.world_size,
            "dev_history": self.dev_history,
            "dev_scores": self.dev_scores,
            "seen": self.seen_now(),
            "bad_data": self.bad.state_dict(),
            "window": self.meter.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("step", "position", "max_steps", "planned_steps", "probe_step_s", "world_size"):
            setattr(self, name, state[name])
        self.dev_history = dict(state["dev_history"])
        self.dev_scores = dict(state.get("dev_scores", {}))  # checkpoints saved before --dev-scores have none
        self.seen = {k: state["seen"].get(k, 0) for k in SEEN_KEYS}
        self.bad.load_state_dict(state["bad_data"])
        self.meter = LossMeter(self.meter.tasks, **state["window"])
