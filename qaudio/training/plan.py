"""How long a run trains: ``--max-steps``, ``--max-minutes`` (a timed probe of real steps), or
``--epochs``; and the expected time, said up front."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .setup import Run


import math

from .budget import probe_step_seconds, steps_for_budget
from .config import TrainConfig

SLOW_FACTOR = 1.3  # --expected-step-s: a probed step this much slower is worth a note


def eta_message(max_steps: int, step_s: float, dev_s: float, cfg: TrainConfig) -> str:
    """The expected training time, said up front; and plainly, when this machine is slower than the
    run was sized for (``--expected-step-s``), that the result will be the same, only later."""
    passes = 2 + (max_steps // cfg.eval_every if cfg.eval_every else 0)
    minutes = (max_steps * step_s + passes * dev_s) / 60
    text = (
        f"qaudio train: {max_steps} steps at {step_s:.3f} s per step (probed) + {passes} dev passes: "
        f"about {minutes:.1f} min of training"
    )
    if cfg.dev_scores:  # not probed: its cost depends on how long the model's answers are by then
        text += f", plus --dev-scores {cfg.dev_scores}'s decoding at each dev pass after step 0 (not in this estimate)"
    if cfg.expected_step_s and step_s > SLOW_FACTOR * cfg.expected_step_s:
        text += (
            f"\nqaudio train: note: this machine is {step_s / cfg.expected_step_s:.1f}x slower than this run "
            f"was sized for ({cfg.expected_step_s:.3f} s per step): it trains the same {max_steps} steps, so the "
            "model comes out the same, only later. Another job sharing the cores, or a slower CPU, is the usual cause"
        )
    return text


def plan_steps(
    cfg: TrainConfig,
    accelerator: Accelerator,
    run: Run,
    optimizer: torch.optim.Optimizer,
    dev_s: float,
    log: Callable[[str], None],
) -> tuple[int, float | None]:
    """The schedule's length (--max-steps, --max-minutes via a timed probe, else --epochs) and the
    probed seconds per step (None: no probe ran)."""
    step_s = None
    if cfg.max_steps:
        max_steps = cfg.max_steps
    elif cfg.max_minutes:
        step_s = probe_step_seconds(run.model, accelerator, run.collator, run.sampler, optimizer, cfg)
        max_steps = steps_for_budget(cfg.max_minutes * 60, step_s, dev_s, cfg.eval_every)
        if accelerator.num_processes > 1:  # timings differ per process; all must stop at the same step
            from accelerate.utils import broadcast_object_list

            max_steps = broadcast_object_list([max_steps])[0]
        log(
            f"qaudio train: --max-minutes {cfg.max_minutes:g}: {step_s:.3f} s per step, {dev_s:.1f} s per dev "
            f"pass -> {max_steps} steps"
        )
    else:
        per_step = cfg.grad_accum * accelerator.num_processes  # global micro-batches per optimizer step
        max_steps = max(1, math.ceil(cfg.epochs * run.examples / (run.sampler.mean_batch_examples() * per_step)))
    if step_s is None and cfg.eta:
        step_s = probe_step_seconds(run.model, accelerator, run.collator, run.sampler, optimizer, cfg)
    if step_s is not None:
        log(eta_message(max_steps, step_s, dev_s, cfg))
    return max_steps, step_s
