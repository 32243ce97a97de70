"""``--max-minutes``: how many optimizer steps fit a time budget, from a timed probe.

The probe runs a few real micro-batches through loading, forward and backward, and times an
AdamW step on copies of the trainable weights; it leaves the run untouched (gradients dropped,
weights and optimizer state unchanged, RNG state restored), so a run with a budget trains
exactly like a run given the resulting ``--max-steps``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .mixing import MixtureSampler


import time

import numpy as np
import torch

from ..model.speed import training_attention
from . import checkpoint as ckpt
from .bad_data import BadDataLog
from .batching import Batch, Collator, first_usable_batch, make_loader, to_device
from .config import TrainConfig
from .losses import output_loss

# Timed micro-batches (after one warm-up). Batches differ in cost with their clips' lengths and
# tasks: on the demo preset (2-core Xeon, fp32) 10-step windows ranged 0.27-0.47 s per step, and a
# 3-batch probe read 0.30 and 0.56 s in two runs whose steps averaged 0.42 and 0.39 s. Ten batches cost
# about 4 s there and should narrow that spread by about sqrt(10/3) (one run so far: 0.34 against 0.41).
PROBE_BATCHES = 10


def probe_step_seconds(
    model: torch.nn.Module,
    accelerator: Accelerator,
    collator: Collator,
    sampler: MixtureSampler,
    optimizer: Any,  # torch.optim.AdamW, or accelerate's wrapper of it (its .optimizer)
    cfg: TrainConfig,
) -> float:
    """Seconds per optimizer step, timed on a few real micro-batches: loading, forward, backward,
    plus an AdamW step on copies of the trainable weights.

    The probe leaves no trace: gradients are dropped, the weights and the optimizer are
    untouched, and the RNG state is restored.
    """
    rng = ckpt.rng_state()
    it = iter(make_loader(sampler, 0, collator, 0))
    times = []
    for k in range(PROBE_BATCHES + 1):
        t0 = time.perf_counter()
        batch: Batch = next(it)
        if batch.inputs is None:  # every process must run the same number of backward passes
            batch = first_usable_batch(collator, len(collator.items), BadDataLog())
        inputs = to_device(batch.inputs, accelerator.device)
        with training_attention(accelerator.device):  # as the training step runs it
            out = model(**inputs)
        loss = output_loss(out, cfg.loss_weighting, cfg.ctc_weight)
        accelerator.backward(loss)
        if k:  # the first micro-batch warms up kernels and allocators
            times.append(time.perf_counter() - t0)
    copies = [p.detach().clone().requires_grad_() for p in model.parameters() if p.requires_grad]
    for c in copies:
        c.grad = torch.randn_like(c)
    throwaway = type(optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer)(copies, lr=cfg.lr)
    t0 = time.perf_counter()
    throwaway.step()
    optimizer_s = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    ckpt.set_rng_state(rng)
    return float(np.mean(times)) * cfg.grad_accum + optimizer_s


def steps_for_budget(budget_s: float, step_s: float, dev_s: float, eval_every: int) -> int:
    """The most steps whose training and dev passes (every ``eval_every`` and at the end) fit the budget."""
    steps = max(1, int(budget_s / step_s))
    for _ in range(3):  # the dev-pass count depends on the step count: settle it
        passes = 1 + (steps // eval_every if eval_every else 0)
        steps = max(1, int((budget_s - passes * dev_s) / step_s))
    return steps
