"""Dev scores: the learning curve of what the report measures (``--dev-scores N``).

The dev loss says whether the model fits its targets; the report reads word error rates, BLEU,
accuracies and caption scores, which a falling loss does not always move. So at each dev pass
after step 0, the main process decodes the first N dev examples of each *group* (greedy, as
``qaudio eval`` does: :class:`qaudio.infer.Pipeline`, label scoring for classification) and
scores them with the task's metric family at the task's profile (the resolution ``qaudio eval``
uses for a benchmark that names none). A group is a task and one language pair for tasks whose
dev examples span several (``asr en``, ``s2tt en->de``), the task alone otherwise (``aac``).

Decoding must leave training exactly as it was: the model goes back to train mode, and Python's,
NumPy's and torch's random states are restored, so a run with the option gives the same losses
as a run without it. The scores live in :class:`~.state.TrainState` (saved with checkpoints),
in ``metrics.jsonl`` (``kind: dev_score``) and in ``training.json``'s ``score_curve``
(:mod:`.summary`), which the report plots (:func:`qaudio.report.plot_score_curve`).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..audio import SAMPLE_RATE, AudioError
from ..metrics import get_metric
from ..metrics.base import display_name, format_value
from .batching import load_clip
from .config import TrainConfig
from .corpus import Item
from .mixing import mixing_groups

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..infer import Pipeline
    from ..task import Task
    from .metrics_log import MetricsLog
    from .setup import Run
    from .state import TrainState


@dataclass
class ScoreGroup:
    """The dev examples one curve is scored on: one task, and one language pair where it has several."""

    name: str  # "asr en", "s2tt en->de", "aac"
    task: Task
    language: str  # the text language the metric's conventions follow
    items: list[Item]


def score_groups(items: list[Item], per_group: int) -> list[ScoreGroup]:
    """The first ``per_group`` items of each group (the groups ``--mix-by pair`` mixes), sorted by
    task and language pair."""
    members: dict[str, list[Item]] = {}
    for item, name in zip(items, mixing_groups([it.example for it in items], "pair"), strict=True):
        members.setdefault(name, []).append(item)

    def task_and_pair(named: tuple[str, list[Item]]) -> tuple[str, str, str]:
        ex = named[1][0].example
        return ex.task, ex.audio_lang, ex.text_lang

    ordered = sorted(members.items(), key=task_and_pair)
    return [ScoreGroup(name, group[0].task, group[0].example.text_lang, group[:per_group]) for name, group in ordered]


@contextlib.contextmanager
def random_state_kept(device: torch.device) -> Iterator[None]:
    """Whatever runs inside leaves Python's, NumPy's and torch's generators (CPU, and the current
    CUDA device) as they were: the next training step draws the same dropout masks."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def score_group(pipeline: Pipeline, group: ScoreGroup, clip: Callable[[Item], np.ndarray], batch_size: int) -> dict:
    """Decode ``group``'s examples and score them: the headline metric's name, value, unit and direction."""
    from ..evaluate import answer_labels, prediction

    task = group.task
    family = get_metric(task.metric)
    labels = answer_labels(task)
    audios, examples = [], []
    for item in group.items:
        try:
            audios.append((clip(item), SAMPLE_RATE))
        except AudioError:
            continue  # unusable audio: the dev loss's bad-data log counts it already
        examples.append(item.example)
    if not examples:
        return {"error": "no usable audio among the group's dev examples"}
    requests = [ex.request(task, labels=labels) for ex in examples]
    results = pipeline.run(audios, requests, batch_size=batch_size)
    predictions = [family.prediction(prediction(ex.id, r)) for ex, r in zip(examples, results, strict=True)]
    try:
        scored = family(
            predictions,
            [family.reference(ex) for ex in examples],
            profile=family.check_profile(task.profile),  # as qaudio.evaluate.resolve does without a suite profile
            language=group.language,
            **task.metric_options(),
        )
    except ValueError as e:  # e.g. a reference label outside the task's label set: said, not a number
        return {"error": f"could not be scored: {e}"}
    value = scored.score
    return {
        "metric": scored.primary,
        "value": None if math.isnan(value) else float(value),  # None: not computed (the report says n/a)
        "unit": scored.units.get(scored.primary, ""),
        "higher_is_better": scored.higher_is_better,
        "profile": scored.profile,
        "n": scored.n,
    }


def dev_clip_loader(run: Run) -> Callable[[Item], np.ndarray]:
    """A dev item's samples, loaded as the dev loss loads them: its segment when chunked, and for
    streamed shard sets from the bytes read with the dev items."""
    from .streaming import HeadCollator

    collator = run.dev_collator
    blobs: dict[int, bytes] = {}
    if isinstance(collator, HeadCollator):
        blobs = {id(item): blob for item, blob in zip(collator.items, collator.blobs, strict=True)}
    return lambda item: load_clip(item, collator.max_seconds, blobs.get(id(item)))


def decode_and_score(model: torch.nn.Module, run: Run, cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """``{group: score}`` of the bare model (an AudioLM) on ``cfg.dev_scores`` examples per group."""
    from ..infer import DEFAULT_BATCH_SIZE, Pipeline

    was_training = model.training
    # No voice activity detection: a dev clip is answered, never dropped as "no speech".
    pipeline = Pipeline(model, batch_size=cfg.batch_size or DEFAULT_BATCH_SIZE, detect_no_speech=False)  # type: ignore[arg-type]
    clip = dev_clip_loader(run)
    try:
        return {
            g.name: score_group(pipeline, g, clip, pipeline.batch_size)
            for g in score_groups(run.score_items, cfg.dev_scores)
        }
    finally:
        model.train(was_training)  # the Pipeline put it in eval mode


def describe_scores(scores: dict[str, dict[str, Any]]) -> str:
    """``"asr en WER 12.30 %, aac CIDEr-D 0.1234"``: the log line's part."""
    parts = []
    for group, s in scores.items():
        if "error" in s:
            parts.append(f"{group}: {s['error']}")
        else:
            parts.append(f"{group} {display_name(s['metric'])} {format_value(s['value'], s['unit'])}")
    return ", ".join(parts)


def dev_score_pass(
    model: torch.nn.Module,
    accelerator: Accelerator,
    run: Run,
    cfg: TrainConfig,
    state: TrainState,
    metrics: MetricsLog,
    log: Callable[[str], None],
) -> float:
    """``--dev-scores``: score the dev groups at ``state.step``; returns the seconds it took (0: not asked)."""
    # Step 0 is skipped: an untrained model rambles up to every task's max_new_tokens, which is the
    # slowest decode there is and says nothing the dev loss does not.
    if not cfg.dev_scores or state.step == 0 or not run.score_items:
        return 0.0
    t0 = time.perf_counter()
    scores: dict[str, dict[str, Any]] = {}
    if accelerator.is_main_process:  # the others wait: decoding is a few hundred clips, not worth sharding
        with random_state_kept(accelerator.device):
            scores = decode_and_score(accelerator.unwrap_model(model), run, cfg)
    accelerator.wait_for_everyone()
    if accelerator.num_processes > 1:  # every process's TrainState holds the same history
        from accelerate.utils import broadcast_object_list

        scores = broadcast_object_list([scores])[0]
    seconds = time.perf_counter() - t0
    state.dev_scores[str(state.step)] = scores
    metrics.log(
        {
            "kind": "dev_score",
            "step": state.step,
            "n": {g: s.get("n") for g, s in scores.items()},
            "seconds": seconds,
            "scores": {g: s.get("value") for g, s in scores.items()},
            "metric": {g: s.get("metric") for g, s in scores.items()},
        }
    )
    log(f"qaudio train: step {state.step} dev scores ({seconds:.1f} s): {describe_scores(scores)}")
    return seconds
