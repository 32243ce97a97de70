"""``--dev-scores``: the headline metric per task and language pair at the dev passes of training,
in metrics.jsonl, training.json and the report; training itself unchanged by it."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from qaudio.data import Example
from qaudio.report import FORMAT, render_html, render_markdown, score_curve_rows
from qaudio.specs import get_task
from qaudio.train import train
from qaudio.training.bad_data import BadDataLog
from qaudio.training.config import TrainConfig
from qaudio.training.corpus import Item
from qaudio.training.dev_scores import score_groups
from qaudio.training.losses import LossMeter
from qaudio.training.metrics_log import read_metrics
from qaudio.training.state import TrainState
from qaudio.training.summary import read_summary, score_curve

# ---- groups, history, summary (no model) -------------------------------------------------------


def _item(task: str, audio_lang: str, text_lang: str, n: int) -> Item:
    ex = Example(id=f"{task}-{audio_lang}-{text_lang}-{n}", audio="x.wav", duration=1.0, task=task,
                 audio_lang=audio_lang, text_lang=text_lang, target="a b")  # fmt: skip
    return Item(ex, get_task(task), "unit")


def test_groups_split_tasks_by_language_pair_only_where_they_have_several():
    items = [_item("asr", "fr", "fr", 0), _item("aac", "unknown", "en", 0), _item("s2tt", "en", "de", 0)]
    items += [_item("asr", "en", "en", n) for n in range(5)] + [_item("s2tt", "de", "en", 0)]
    groups = score_groups(items, per_group=3)
    assert [g.name for g in groups] == ["aac", "asr en", "asr fr", "s2tt de->en", "s2tt en->de"]
    by_name = {g.name: g for g in groups}
    assert [it.example.id for it in by_name["asr en"].items] == ["asr-en-en-0", "asr-en-en-1", "asr-en-en-2"]
    assert by_name["s2tt en->de"].language == "de" and by_name["aac"].task.name == "aac"


def test_a_checkpoint_saved_before_dev_scores_still_loads_and_the_history_round_trips():
    state = TrainState(BadDataLog(), LossMeter(["asr"]))
    state.dev_scores["200"] = {"asr en": {"metric": "wer", "value": 12.5}}
    saved = state.state_dict()
    restored = TrainState(BadDataLog(), LossMeter(["asr"]))
    restored.load_state_dict(saved)
    assert restored.dev_scores == state.dev_scores
    old = {k: v for k, v in saved.items() if k != "dev_scores"}
    restored.load_state_dict(old)
    assert restored.dev_scores == {}


def _score(metric: str, value: float | None, unit: str = "%", higher: bool = False) -> dict:
    return {"metric": metric, "value": value, "unit": unit, "higher_is_better": higher, "profile": "p", "n": 24}


def test_the_score_curve_is_per_group_sorted_by_step_and_skips_unscored_passes():
    history = {
        "1000": {"asr en": _score("wer", 9.0), "aac": {"error": "could not be scored: no"}},
        "200": {"asr en": _score("wer", 80.0), "aac": _score("cider_d", None, "score", True)},
    }
    curve = score_curve(history)
    assert curve["asr en"]["points"] == [[200, 80.0], [1000, 9.0]]
    assert curve["asr en"]["metric"] == "wer" and curve["asr en"]["higher_is_better"] is False
    assert curve["aac"]["points"] == [[200, None]]  # not computed: null, never a made-up number


def test_the_report_shows_the_score_curve_as_a_figure_and_a_table():
    training = {
        "steps": 1200,
        "planned_steps": 1200,
        "examples_seen": 38400,
        "train_seconds": 300.0,
        "learning_curve": {"asr": [[0, 8.0], [1200, 0.5]]},
        "score_curve": {
            "asr en": {**_score("wer", None), "points": [[400, 60.0], [800, 21.5], [1200, 4.25]]},
            "ser": {**_score("accuracy", None, higher=True), "points": [[400, 30.0], [800, 70.0], [1200, 91.0]]},
        },
    }
    report = {
        "format": FORMAT,
        "created": "2026-01-01T00:00:00+00:00",
        "qaudio_version": "0.1.0",
        "suite": {"name": "unit", "description": "", "source": "unit"},
        "model": {"path": "/models/demo"},
        "systems": [{"name": "qaudio", "kind": "model"}],
        "benchmarks": [],
        "training": training,
    }
    header, rows = score_curve_rows(training)
    assert header == ["Dev group", "n", "Metric", "step 400", "step 800", "step 1,200"]
    assert rows[0] == ["asr en", "24", "WER % (lower is better)", "60.00", "21.50", "4.25"]
    assert rows[1][2] == "accuracy % (higher is better)"
    md = render_markdown(report)
    assert "Learning curve (the headline metric" in md and "| asr en | 24 | WER % (lower is better) |" in md
    alts = re.findall(r'alt="([^"]+)"', render_html(report))
    assert "Learning curve of the evaluated model: headline metric per dev group against optimizer steps" in alts
    assert score_curve_rows({"score_curve": {}}) == ([], [])  # a run without --dev-scores: no table
    many = {"x": {**_score("wer", None), "points": [[s, 1.0] for s in range(0, 2000, 100)]}}
    steps = score_curve_rows({"score_curve": many})[0][3:]
    assert len(steps) == 8 and steps[0] == "step 0" and steps[-1] == "step 1,900"


# ---- a short training run (tests/conftest.py's tiny synthetic corpus) ----------------------------------


def _config(corpus: Path, out: Path, dev_scores: int) -> TrainConfig:
    return TrainConfig(
        model="tiny",
        recipes=f"synthetic:{corpus}",
        tasks="asr,ser",  # asr: three language pairs in the tiny corpus; ser: label scoring
        output_dir=str(out),
        precision="fp32",
        threads=1,
        batch_size=8,
        max_steps=4,
        log_every=1,
        eval_every=2,
        save_every=2,
        dev_scores=dev_scores,
        progress=False,
        tensorboard=False,
        plot=False,
        eta=False,
    )


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir, "train")}


@pytest.mark.slow
def test_dev_scores_are_logged_and_summarised_leave_training_unchanged_and_survive_a_resume(corpus, tmp_path):
    train(_config(corpus, tmp_path / "off", 0))
    on = tmp_path / "on"
    summary = read_summary(train(_config(corpus, on, 1)))
    # Decoding between steps changes nothing in training: the same losses, exactly (fp32, one thread).
    assert _losses(on) == _losses(tmp_path / "off") and len(_losses(on)) == 4
    assert read_summary(tmp_path / "off" / "model")["score_curve"] == {}

    records = read_metrics(on, "dev_score")
    assert [r["step"] for r in records] == [2, 4]  # every dev pass but step 0's
    groups = ["asr de", "asr en", "asr fr", "ser"]
    assert all(sorted(r["scores"]) == groups and r["seconds"] > 0 for r in records)
    assert records[0]["metric"] == {"asr de": "wer", "asr en": "wer", "asr fr": "wer", "ser": "accuracy"}
    curve = summary["score_curve"]
    assert sorted(curve) == groups
    for series in curve.values():
        assert [p[0] for p in series["points"]] == [2, 4] and series["n"] == 1
        for _, value in series["points"]:
            assert value is not None and math.isfinite(value) and value >= 0
            if series["metric"] == "accuracy":
                assert value in (0.0, 100.0)  # one example: right or wrong
    assert curve["ser"]["higher_is_better"] and not curve["asr en"]["higher_is_better"]

    # Resume from step 2: the step-2 scores come back from the checkpoint, step 4's are made again.
    shutil.rmtree(on / "checkpoints" / "step-00000004")
    shutil.rmtree(on / "model")
    resumed = read_summary(train(_config(corpus, on, 1)))
    assert resumed["score_curve"] == curve
    assert _losses(on) == _losses(tmp_path / "off")
    assert [r["step"] for r in read_metrics(on, "dev_score")] == [2, 4]
    saved = json.loads((on / "model" / "training.json").read_text())
    assert saved["score_curve"] == curve
