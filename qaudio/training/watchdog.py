"""Numerics watchdog: when a step's loss or gradient is non-finite, find where it came from.

A NaN loss says nothing about its origin: a clip that decodes to garbage, a projector whose
activations overflow bf16, a learning rate that blew up a layer. The watchdog costs nothing
on healthy steps: hooks are armed only after a bad step, on a replay of that step's
micro-batches (the same inputs, under the same precision), and removed at once.

- A non-finite **loss**: forward hooks on every module record the first one (in execution
  order) whose output holds NaN or inf, and whether that module's inputs were already
  non-finite (then the batch itself is bad, not the model).
- A non-finite **gradient** with a finite loss: the replay runs backward too, and the first
  module (in the model's order) with a non-finite parameter gradient is named.

Each bad step appends one JSON line to ``numerics-rank{R}.jsonl`` in the run folder: the
step, the kind, the module, the example ids and audio paths of the replayed micro-batches,
and what to try. The training loop decides whether to continue (``--max-bad-steps``).
Dropout makes a replay differ from the original step; a replay that stays finite is
reported as such.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import torch

from .batching import Batch, to_device
from .corpus import Item
from .losses import output_loss

REPORT = "numerics-rank{rank}.jsonl"  # in the run folder, one line per bad step


def _finite(value: Any) -> bool:
    """Every floating tensor inside ``value`` (a tensor, tuple, list, dict or model output) is finite."""
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, dict) or hasattr(value, "items"):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return all(_finite(v) for v in value)
    return True


class FirstNonFinite:
    """Forward hooks on every submodule; remembers the first whose output is not finite."""

    def __init__(self, model: torch.nn.Module):
        self.module: str | None = None
        self.inputs_finite: bool | None = None
        self._handles = [
            m.register_forward_hook(self._hook(name), with_kwargs=True) for name, m in model.named_modules() if name
        ]

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module, args, kwargs, output):
            if self.module is None and not _finite(output):
                self.module, self.inputs_finite = name, _finite(args) and _finite(kwargs)

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def first_non_finite_grad(model: torch.nn.Module) -> str | None:
    """The first module (in the model's order) owning a parameter with a non-finite gradient."""
    for name, p in model.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return name.rsplit(".", 1)[0]
    return None


def advice(kind: str, module: str | None, inputs_finite: bool | None, precision: str) -> str:
    """What to try, from what was found."""
    if module is not None and inputs_finite is False:  # the first bad output had bad inputs: from the data
        return (
            "the batch's inputs are already non-finite: check the listed clips (decode them with "
            "qaudio.audio.load_audio) and drop or fix them"
        )
    tips = []
    if precision in ("bf16", "fp16"):
        tips.append(f"--precision fp32 (this run uses {precision}; {module or 'a module'} may overflow it)")
    tips += ["a lower --lr (or a longer warm-up)", "the listed clips (listen to them; drop them to confirm)"]
    if kind == "gradient":
        tips.append("a smaller --grad-clip")
    return "try " + "; ".join(tips)


class NumericsWatchdog:
    """Diagnoses bad steps of one training run; see the module docstring."""

    def __init__(
        self,
        run_dir: Path,
        items: Iterable[Item],
        rank: int = 0,
        precision: str = "fp32",
        loss_weighting: str = "token",
        device: torch.device | str = "cpu",
        ctc_weight: float = 0.0,
    ):
        self.path = Path(run_dir) / REPORT.format(rank=rank)
        self.audio = {it.example.id: it.example.audio for it in items}  # id -> audio path, for the report
        self.precision = precision
        self.loss_weighting, self.ctc_weight = loss_weighting, ctc_weight  # as the training loop weighs the loss
        self.device = device

    def loss_of(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """The batch loss, computed as the training loop computes it."""
        inputs = to_device(batch.inputs, self.device)
        return output_loss(model(**inputs), self.loss_weighting, self.ctc_weight)

    def diagnose(self, model: torch.nn.Module, batches: list[Batch], step: int) -> dict:
        """Replay ``batches`` (the bad step's micro-batches) with hooks armed; write and return the finding."""
        # Each process replays its own batches on the bare model: no collective calls, so a bad
        # step that every process skips is diagnosed without waiting on the others.
        inner = cast(torch.nn.Module, model.module) if hasattr(model, "module") else model  # DDP's wrapped model
        finding: dict[str, Any] = {"step": step, "kind": "none", "module": None, "inputs_finite": None}
        for batch in batches:
            if batch.inputs is None:
                continue
            hooks = FirstNonFinite(inner)
            try:
                with torch.enable_grad():
                    loss = self.loss_of(inner, batch)
                    if hooks.module is None and bool(torch.isfinite(loss).all()) and loss.requires_grad:
                        inner.zero_grad(set_to_none=True)
                        loss.backward()
                        culprit = first_non_finite_grad(inner)
                        if culprit is not None:
                            finding.update(kind="gradient", module=culprit, inputs_finite=True)
            finally:
                hooks.remove()
                inner.zero_grad(set_to_none=True)
            if hooks.module is not None:
                finding.update(kind="loss", module=hooks.module, inputs_finite=hooks.inputs_finite)
            elif not bool(torch.isfinite(loss.detach()).all()):  # every module's output was finite
                finding.update(kind="loss", module="(the loss computation)", inputs_finite=True)
            if finding["module"] is not None:
                finding["ids"] = list(batch.ids)
                break
        else:
            finding["ids"] = [i for b in batches for i in b.ids]
        finding["audio"] = [self.audio.get(i) for i in finding["ids"]]
        finding["advice"] = (
            advice(finding["kind"], finding["module"], finding["inputs_finite"], self.precision)
            if finding["module"]
            else "the replay stayed finite (dropout or a transient overflow): "
            "if it recurs, try --precision fp32 or a lower --lr"
        )
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(finding) + "\n")
        return finding

    def message(self, finding: dict) -> str:
        """One line for the training log."""
        where = (
            f"first non-finite {finding['kind']} at module {finding['module']!r}"
            if finding["module"]
            else "not reproduced on replay"
        )
        clips = ", ".join(str(a) for a in finding["audio"][:4]) + (" ..." if len(finding["audio"]) > 4 else "")
        return f"numerics: {where}; batch {clips}; {finding['advice']} (details: {self.path})"
