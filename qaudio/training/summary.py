"""What a training run did, saved beside the model: ``training.json``.

A report that reads "43% WER" must also say whether the model saw 880 steps or 2,000, so the
final model directory carries the run's facts: optimizer steps, examples and audio seen, wall
time, the precision and threads it ran with, the step time the probe measured, whether a time
budget cut the schedule short, the dev-loss learning curve (per task, against steps) and, with
``--dev-scores``, the headline metric's curve per task and language pair (``score_curve``).
``qaudio eval`` copies it into its report, where the table's caption and the learning-curve
plots come from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .config import TrainConfig
    from .state import TrainState

from ..hardware import cpu_name

TRAINING_FILE = "training.json"


def machine() -> str:
    """The CPU model (and GPU, if any) in words, for the record."""
    cpu = cpu_name()
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (host CPU: {cpu})"
    except ImportError:
        pass
    return cpu


def summarize_run(
    state: TrainState, accelerator: Accelerator, cfg: TrainConfig, precision: str, threads: int
) -> dict[str, Any]:
    """The facts of ``training.json`` for a finished run (``state``: its TrainState): steps done and
    planned, examples and audio seen over every process and resume, and how it ran."""
    totals = state.seen_now()
    world = accelerator.num_processes
    if world > 1:  # every process counted its own examples; the run took as long as its slowest process
        from accelerate.utils import gather_object

        per_process = gather_object([totals])
        totals = {k: sum(t[k] for t in per_process) for k in ("examples", "audio_seconds")} | {
            "train_seconds": max(t["train_seconds"] for t in per_process)
        }
    return {
        "steps": state.step,
        "planned_steps": state.planned_steps,
        "stopped_early": state.step < state.planned_steps,
        "examples_seen": int(totals["examples"]),
        "audio_seconds_seen": round(totals["audio_seconds"], 1),
        "train_seconds": round(totals["train_seconds"], 1),
        "probe_step_s": state.probe_step_s,
        "precision": precision,
        "threads": threads,
        "processes": world,
        "machine": machine(),
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "tasks": cfg.tasks,
        # the mixture and the rate: with them and the steps, a reader can tell a run's budget from its method
        "mix_by": cfg.mix_by,
        "temperature": cfg.temperature,
        "mix_weights": cfg.mix_weights,
        "lr": cfg.lr,
        "ctc_weight": cfg.ctc_weight,
        "learning_curve": learning_curve(state.dev_history),
        "score_curve": score_curve(state.dev_scores),
    }


def learning_curve(dev_history: dict[str, dict[str, float]]) -> dict[str, list[list[float]]]:
    """``{step: {task: loss}}`` -> ``{task: [[step, loss], ...]}`` sorted by step."""
    curve: dict[str, list[list[float]]] = {}
    for step in sorted(dev_history, key=int):
        for task, loss in dev_history[step].items():
            curve.setdefault(task, []).append([int(step), float(loss)])
    return curve


def score_curve(dev_scores: dict[str, dict[str, dict]]) -> dict[str, dict[str, Any]]:
    """``{step: {group: score}}`` (:mod:`.dev_scores`) -> ``{group: {metric, unit, higher_is_better,
    profile, n, points: [[step, value], ...]}}`` sorted by step; a value that could not be computed
    is null, a group that could not be scored at a step has no point there."""
    curve: dict[str, dict[str, Any]] = {}
    for step in sorted(dev_scores, key=int):
        for group, score in dev_scores[step].items():
            if "metric" not in score:  # not scored at this step (the reason is in metrics.jsonl)
                continue
            series = curve.setdefault(
                group, {k: score[k] for k in ("metric", "unit", "higher_is_better", "profile", "n")} | {"points": []}
            )
            if score["metric"] != series["metric"]:  # the family's headline changed (SPICE became available)
                series = curve.setdefault(
                    f"{group} ({score['metric']})", {**series, "metric": score["metric"], "points": []}
                )
            series["points"].append([int(step), score["value"]])
    return curve


def write_summary(model_dir: str | os.PathLike, summary: dict[str, Any]) -> Path:
    path = Path(model_dir) / TRAINING_FILE
    path.write_text(json.dumps(summary, indent=1, allow_nan=True) + "\n", encoding="utf-8")
    return path


def read_summary(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's summary, or None for a model that was not trained by ``qaudio train`` (or a hub id)."""
    path = Path(model_dir) / TRAINING_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def describe(summary: dict[str, Any]) -> str:
    """One line: how much training the model had, for report captions and logs."""
    hours = summary.get("audio_seconds_seen", 0.0) / 3600
    minutes = summary.get("train_seconds", 0.0) / 60
    text = (
        f"trained {summary['steps']:,} optimizer steps ({summary.get('examples_seen', 0):,} examples, "
        f"{hours:.1f} h of audio) in {minutes:.1f} min, {summary.get('precision', '?')}, "
        f"{summary.get('processes', 1)} process(es) x {summary.get('threads', '?')} threads on "
        f"{summary.get('machine', 'an unknown machine')}"
    )
    if "mix_by" in summary:  # absent from models trained before it was recorded
        unit = "task" if summary["mix_by"] == "task" else "language pair"
        pinned = f" ({summary['mix_weights']} pinned)" if summary.get("mix_weights") else ""
        text += (
            f"; tasks {summary['tasks']} mixed by {unit} at T={summary['temperature']:g}{pinned}, "
            f"peak lr {summary['lr']:g}"
        )
    if summary.get("stopped_early"):
        text += (
            f"; STOPPED EARLY by the time budget at step {summary['steps']} of {summary['planned_steps']} "
            "planned (this machine was slower than the probe measured): the schedule did not finish"
        )
    return text
