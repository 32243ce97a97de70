"""Losses as the loop uses them: the batch objective, per-task sums, the dev loss, finiteness.

The model returns, per example, the summed NLL of its target tokens and their count
(``AudioLMOutput.loss_sum``, ``.target_tokens``); from those the loop builds the objective
(divided by the batch's target tokens, the usual LM loss, or per example) and per-task sums,
which are reduced across processes only when a metrics line is written. Each quantity is
divided once, here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..model.audio_lm import AudioLMOutput


from collections import defaultdict
from dataclasses import dataclass, field

import torch

from .batching import Collator, to_device
from .corpus import Item


@dataclass
class LossMeter:
    """Sums of (token-weighted) losses per task, reduced across processes when read."""

    tasks: list[str]
    loss_sum: list[float] = field(default_factory=list)  # per task: summed token NLL
    tokens: list[float] = field(default_factory=list)  # per task: target tokens
    examples: list[float] = field(default_factory=list)  # per task: examples
    extra: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # step loss sum, audio s, ...

    def __post_init__(self) -> None:
        n = len(self.tasks)
        self.loss_sum = self.loss_sum or [0.0] * n
        self.tokens = self.tokens or [0.0] * n
        self.examples = self.examples or [0.0] * n
        self.extra = defaultdict(float, self.extra)

    def add(self, tasks: list[str], loss_sums: torch.Tensor, tokens: torch.Tensor) -> None:
        """``loss_sums`` and ``tokens`` (B,): the forward's ``loss_sum`` and ``target_tokens``."""
        for t, loss_sum, n in zip(tasks, loss_sums.tolist(), tokens.tolist(), strict=True):
            k = self.tasks.index(t)
            self.loss_sum[k] += loss_sum
            self.tokens[k] += n
            self.examples[k] += 1

    def reduce(self, accelerator: Accelerator) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """Per-task mean loss, per-task examples, and the extra sums, over every process."""
        keys = sorted(self.extra)
        local = torch.tensor(
            self.loss_sum + self.tokens + self.examples + [self.extra[k] for k in keys],
            dtype=torch.float64,
            device=accelerator.device,
        )
        total = accelerator.reduce(local, reduction="sum").tolist() if accelerator.num_processes > 1 else local.tolist()
        n = len(self.tasks)
        sums, toks, exs, rest = total[:n], total[n : 2 * n], total[2 * n : 3 * n], total[3 * n :]
        task_loss = {t: sums[k] / toks[k] for k, t in enumerate(self.tasks) if toks[k] > 0}
        task_examples = {t: exs[k] for k, t in enumerate(self.tasks) if exs[k] > 0}
        return task_loss, task_examples, dict(zip(keys, rest, strict=True))

    def state_dict(self) -> dict:
        return {"loss_sum": self.loss_sum, "tokens": self.tokens, "examples": self.examples, "extra": dict(self.extra)}


def batch_loss(loss_sum: torch.Tensor, tokens: torch.Tensor, weighting: str) -> torch.Tensor:
    """One scalar from per-example loss sums and target tokens (B,): every token counts once
    (``token``, the LM objective) or every example does, as its mean token loss (``example``)."""
    if weighting == "token":
        return loss_sum.sum() / tokens.sum().clamp(min=1)
    return (loss_sum / tokens.clamp(min=1)).mean()


def output_loss(out: AudioLMOutput, weighting: str, ctc_weight: float = 0.0) -> torch.Tensor:
    """:func:`batch_loss` of a forward's output (``AudioLMOutput`` with labels), in float32, plus
    ``ctc_weight`` x its auxiliary CTC loss where the batch carried transcripts (``--ctc-weight``)."""
    assert out.loss_sum is not None and out.target_tokens is not None, "the forward had no labels"
    loss = batch_loss(out.loss_sum.float(), out.target_tokens.float(), weighting)
    if ctc_weight and out.ctc_loss is not None:
        loss = loss + ctc_weight * out.ctc_loss
    return loss


def all_finite(value: torch.Tensor, accelerator: Accelerator) -> bool:
    """True when ``value`` is finite on every process (they must agree before backward)."""
    flag = torch.tensor([1.0 if torch.isfinite(value).all() else 0.0], device=accelerator.device)
    if accelerator.num_processes > 1:
        flag = accelerator.reduce(flag, reduction="sum") / accelerator.num_processes
    return bool(flag.item() == 1.0)


@torch.no_grad()
def evaluate_dev(
    model: torch.nn.Module,
    accelerator: Accelerator,
    collator: Collator,
    dev_items: list[Item],
    tasks: list[str],
    batch_size: int,
    weighting: str,
) -> dict[str, float]:
    """Mean dev loss per task (token-weighted, first reference), batches split over processes."""
    if not dev_items:
        return {}
    order = sorted(range(len(dev_items)), key=lambda i: dev_items[i].duration)
    size = batch_size or 16
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    meter = LossMeter(tasks)
    # The bare model: processes run different numbers of dev batches, and a DDP forward would
    # wait for the others (it syncs buffers).
    model = accelerator.unwrap_model(model)
    was_training = model.training
    model.eval()
    for b in batches[accelerator.process_index :: accelerator.num_processes]:
        batch = collator([(-1, i) for i in b])
        if batch.inputs is None:
            continue
        inputs = to_device(batch.inputs, accelerator.device)
        out = model(**inputs)
        meter.add(batch.tasks, out.loss_sum.float().cpu(), out.target_tokens.cpu())
    if was_training:
        model.train()
    task_loss, _, _ = meter.reduce(accelerator)
    return task_loss
