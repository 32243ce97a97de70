"""Training logs: a JSONL metrics file, TensorBoard events, and a loss-curve PNG per task.

``metrics.jsonl`` holds one JSON object per line with a ``kind``: ``train`` (step, loss,
per-task loss, lr, grad norm, throughput), ``dev`` (per-task dev loss), ``skip`` (a step
skipped for a non-finite loss) and ``end`` (totals). It is the record that tests and the
demo's closing note read; TensorBoard gets the same scalars when it is installed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends metric records on the main process; a resumed run drops lines past its step."""

    def __init__(
        self, run_dir: str | os.PathLike, enabled: bool = True, tensorboard: bool = True, resume_step: int | None = None
    ):
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()  # a fresh run in this directory
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional (the `logging` extra)
                pass
            else:
                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)

    def _truncate_after(self, step: int) -> None:
        """Keep the records up to ``step``: the steps after the checkpoint will be logged again."""
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            if rec.get("step", 0) <= step and rec.get("kind") != "end":
                kept.append(line)
        self.path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")
        if self.writer is not None and "step" in record:
            prefix = record.get("kind", "train")
            for key, value in _scalars(record).items():
                self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _scalars(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in record.items():
        if key in ("step", "kind"):
            continue
        if isinstance(value, dict):
            out.update(_scalars(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[f"{prefix}{key}"] = float(value)
    return out


def read_metrics(run_dir: str | os.PathLike, kind: str | None = None) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]


def plot_loss_curves(run_dir: str | os.PathLike) -> list[Path]:
    """One PNG per task: training loss (per logged step) and dev loss, on a log scale."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    train, dev = read_metrics(run_dir, "train"), read_metrics(run_dir, "dev")
    tasks = sorted({t for r in train + dev for t in r.get("task_loss", {})})
    written = []
    for task in tasks:
        fig, ax = plt.subplots(figsize=(6, 4))
        pts = [(r["step"], r["task_loss"][task]) for r in train if task in r.get("task_loss", {})]
        if pts:
            ax.plot(*zip(*pts, strict=True), label="train", linewidth=1, alpha=0.8)
        pts = [(r["step"], r["task_loss"][task]) for r in dev if task in r.get("task_loss", {})]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label="dev", linewidth=2)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy (nats / target token)")
        ax.set_yscale("log")
        ax.set_title(f"loss: {task}")
        ax.grid(True, alpha=0.3)
        ax.legend()
        out = Path(run_dir) / f"loss_{task}.png"
        fig.tight_layout()
        fig.savefig(out, dpi=100)
        plt.close(fig)
        written.append(out)
    return written
