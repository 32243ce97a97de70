"""One optimizer step, the logging window, the dev pass and the deadline: the loop's parts.

A step: ``grad_accum`` micro-batches, forward + backward each (gradients synchronized on
the last) -> clip -> AdamW -> schedule. A step whose loss or gradient is not finite on any
process is skipped by every process; the numerics watchdog replays it to name the first
module that went non-finite, and ``--max-bad-steps`` in a row abort the run.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import torch

from ..model.speed import training_attention
from . import checkpoint as ckpt
from .bad_data import TrainingAborted
from .batching import Batch, first_usable_batch, to_device
from .config import TrainConfig
from .dev_scores import dev_score_pass
from .distill import Distiller
from .losses import LossMeter, all_finite, evaluate_dev, output_loss
from .state import TrainState

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .metrics_log import MetricsLog
    from .setup import Run
    from .watchdog import NumericsWatchdog

DEADLINE_SLACK = 1.1  # --max-minutes: stop at 110% of the budget if the machine slows down after the probe


class MicroBatches:
    """The loader's batches with bad examples recorded. A process whose micro-batch held only
    bad data runs a usable batch with weight 0, so every process makes the same forward and
    backward calls (DDP needs that) and the stream stays aligned."""

    def __init__(self, batches, collator, bad):
        self.batches, self.collator, self.bad = batches, collator, bad
        self.fallback: Batch | None = None

    def next(self) -> tuple[Batch, float]:
        batch: Batch = next(self.batches)
        for item in batch.bad:
            self.bad.record(item)  # raises BadDataError in --strict mode
        if batch.inputs is None:
            if self.fallback is None:
                self.fallback = first_usable_batch(self.collator, len(self.collator.items), self.bad)
            return self.fallback, 0.0
        if self.fallback is None:
            self.fallback = batch
        return batch, 1.0


@dataclass
class Stepper:
    """Runs optimizer steps on ``model``; :meth:`step` is one, or one skip."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    accelerator: Any  # accelerate.Accelerator (accelerate ships no type information)
    cfg: TrainConfig
    precision: str
    micro: MicroBatches
    watchdog: NumericsWatchdog
    metrics: MetricsLog
    log: Callable[[str], None]  # print on the main process, silent elsewhere
    run_dir: Path
    batch_log: TextIO | None = None  # --log-batches: this process's batches-rank<R>.jsonl
    distiller: Distiller | None = None  # --teacher: the loss mixes in the KL to the teacher (qaudio.training.distill)

    def accumulate(self, state: TrainState) -> tuple[list[Batch], list[float] | None]:
        """``grad_accum`` forward/backward passes: the step's batches, and the losses of those that
        count (None: a loss was not finite on some process)."""
        cfg, accelerator = self.cfg, self.accelerator
        batches, losses = [], []
        for k in range(cfg.grad_accum):
            batch, weight = self.micro.next()
            if self.batch_log is not None and weight:
                self.batch_log.write(json.dumps({"step": state.step + 1, "micro": k, "ids": batch.ids}) + "\n")
            batches.append(batch)  # replayed by the watchdog if the step goes non-finite
            inputs = to_device(batch.inputs, accelerator.device)
            sync = k == cfg.grad_accum - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(self.model):
                with training_attention(accelerator.device):  # on CPU: SDPA's math backend (qaudio.model.speed)
                    if self.distiller is None:
                        out = self.model(**inputs)  # loss_sum, target_tokens: (B,) each
                        loss = output_loss(out, cfg.loss_weighting, cfg.ctc_weight) * weight
                    else:
                        distilled = self.distiller.forward(self.model, inputs, cfg.loss_weighting, cfg.ctc_weight)
                        out, loss = distilled.out, distilled.loss * weight
                if not all_finite(loss, accelerator):
                    return batches, None
                accelerator.backward(loss / cfg.grad_accum)
            if self.distiller is not None:  # added with weight 0 too: every process must hold the same keys
                state.meter.extra["distill_kl"] += distilled.kl.item() * weight / cfg.grad_accum  # the step's mean
            if out.ctc_loss is not None:  # with weight 0 too (same keys on every process); the step's mean
                state.meter.extra["ctc_loss"] += out.ctc_loss.item() * weight / cfg.grad_accum
            if weight:
                state.count(batch, out.loss_sum.detach().float().cpu(), out.target_tokens.cpu())
                losses.append(loss.item())
        return batches, losses

    def grad_norm(self) -> float:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.cfg.grad_clip > 0:
            return float(self.accelerator.clip_grad_norm_(params, self.cfg.grad_clip))
        return float(
            torch.linalg.vector_norm(
                torch.stack([p.grad.detach().float().norm() for p in params if p.grad is not None])
            )
        )

    def step(self, state: TrainState) -> bool:
        """One optimizer step; False when it was skipped (non-finite loss or gradient)."""
        batches, losses = self.accumulate(state)
        grad_norm = float("nan")
        skipped = losses is None
        if not skipped:
            grad_norm = self.grad_norm()
            skipped = not math.isfinite(grad_norm) and self.precision != "fp16"  # fp16: the scaler skips by itself
        state.position += self.cfg.grad_accum * self.accelerator.num_processes  # global micro-batches per step
        if skipped:
            self.skip(state, batches, grad_norm)
            return False
        state.bad_in_a_row = 0
        self.optimizer.step()
        if not self.accelerator.optimizer_step_was_skipped:  # fp16 overflow: the schedule waits too
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.meter.extra["loss"] += float(np.mean(losses)) if losses else 0.0
        state.meter.extra["steps"] += 1
        state.meter.extra["grad_norm"] += grad_norm
        return True

    def skip(self, state: TrainState, batches: list[Batch], grad_norm: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        state.bad_in_a_row += 1
        step = state.step
        self.metrics.log(
            {
                "kind": "skip",
                "step": step,
                "position": state.position,
                "grad_norm": grad_norm,
                "reason": "non-finite loss or gradient",
            }
        )
        self.log(
            f"qaudio train: step {step + 1}: non-finite loss or gradient; step skipped ({state.bad_in_a_row} in a row)"
        )
        self.log(f"qaudio train: {self.watchdog.message(self.watchdog.diagnose(self.model, batches, step + 1))}")
        if state.bad_in_a_row >= self.cfg.max_bad_steps:
            last = ckpt.latest_checkpoint(self.run_dir)
            raise TrainingAborted(
                f"{state.bad_in_a_row} non-finite losses in a row at step {step + 1}: training diverged or the data "
                f"is broken. The last good checkpoint is {last or '(none saved yet)'}; lower --lr, use "
                f"--precision fp32, or check the data, then resume from it"
            )


class LogWindow:
    """Every ``--log-every`` steps: one ``train`` record of the window's means over every process."""

    def __init__(
        self,
        accelerator: Accelerator,
        metrics: MetricsLog,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        tasks: list[str],
        bar: Any = None,  # a tqdm bar on the main process
    ):
        self.accelerator, self.metrics, self.scheduler, self.tasks, self.bar = (
            accelerator,
            metrics,
            scheduler,
            tasks,
            bar,
        )
        self.t0 = time.perf_counter()

    def close(self, state: TrainState, run_t0: float) -> None:
        world = self.accelerator.num_processes
        task_loss, task_examples, sums = state.meter.reduce(self.accelerator)
        elapsed = time.perf_counter() - self.t0
        steps_in_window = max(sums.get("steps", 0) / world, 1)
        record = {
            "kind": "train",
            "step": state.step,
            "position": state.position,
            "loss": sums.get("loss", 0.0) / world / steps_in_window,
            "task_loss": task_loss,
            "task_examples": task_examples,
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": sums.get("grad_norm", 0.0) / world / steps_in_window,
            **({"distill_kl": sums["distill_kl"] / world / steps_in_window} if "distill_kl" in sums else {}),
            **({"ctc_loss": sums["ctc_loss"] / world / steps_in_window} if "ctc_loss" in sums else {}),
            "examples_per_s": sums.get("examples", 0.0) / elapsed,
            "audio_s_per_s": sums.get("audio_seconds", 0.0) / elapsed,
            "elapsed_s": time.perf_counter() - run_t0,
        }
        self.metrics.log(record)
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}", audio_s_s=f"{record['audio_s_per_s']:.0f}"
            )
        state.meter = LossMeter(self.tasks)
        self.t0 = time.perf_counter()


def dev_pass(
    model: torch.nn.Module,
    accelerator: Accelerator,
    run: Run,
    cfg: TrainConfig,
    state: TrainState,
    metrics: MetricsLog,
    log: Callable[[str], None],
) -> float:
    """Log the per-task dev loss at ``state.step`` (and with ``--dev-scores`` the headline metrics,
    :mod:`.dev_scores`); returns the seconds it took."""
    if not run.dev_items:
        return 0.0
    t0 = time.perf_counter()
    losses = evaluate_dev(
        model, accelerator, run.dev_collator, run.dev_items, run.tasks, cfg.batch_size, cfg.loss_weighting
    )
    state.dev_history[str(state.step)] = losses
    metrics.log(
        {
            "kind": "dev",
            "step": state.step,
            "task_loss": losses,
            "loss": float(np.mean(list(losses.values()))) if losses else float("nan"),
        }
    )
    log(f"qaudio train: step {state.step} dev loss " + ", ".join(f"{t} {v:.3f}" for t, v in losses.items()))
    dev_score_pass(model, accelerator, run, cfg, state, metrics, log)
    return time.perf_counter() - t0


def past_deadline(deadline: float | None, accelerator: Accelerator) -> bool:
    """The probe's estimate holds on a quiet machine; if other work slows this one down later, the
    run stops at the deadline (final dev pass and save included) instead of overrunning it."""
    if deadline is None:
        return False
    late = time.perf_counter() > deadline
    if accelerator.num_processes > 1:  # all processes must stop at the same step
        from accelerate.utils import broadcast_object_list

        late = broadcast_object_list([late])[0]
    return late
