"""Metric families are declared once: evaluation, ``qaudio score`` and the report read their fields."""

from __future__ import annotations

import dataclasses

import pytest

from qaudio import evaluate, report, score
from qaudio.data import Example
from qaudio.metrics import METRICS, MetricFamily, MetricResult
from qaudio.specs import get_task

# A small input each family scores (caption needs Java and the CoreNLP jars: tested in test_metrics_caption).
CASES = {
    "wer": (["a b c"], ["a b d"], {}),
    "bleu": (["the cat sat on the mat"], ["the cat sat on a mat"], {}),
    "aqa": (["yes"], ["no"], {}),
    "accuracy": (["sad"], ["happy"], {"labels": ("sad", "happy")}),
    "timestamps": (["<|0.00|>hi<|0.30|>"], [[["hi", 0.0, 0.3]]], {}),
    "note": (["bass, pitch 40"], ["bass, pitch 41"], {}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_family_fields_agree_with_what_it_computes(name):
    family = METRICS[name]
    predictions, references, options = CASES[name]
    known = set()
    languages = ("en", "zh") if family.by_language else ("en",)  # CER is computed for Chinese
    for profile, language in [(p, lang) for p in family.profiles for lang in languages]:
        result = family(predictions, references, profile=profile, language=language, **options)
        known |= set(result.values) | set(result.not_computed)
        # The direction the report draws is the one the compute function records for its primary metric.
        assert (result.primary in family.lower_is_better) == (not result.higher_is_better), profile
    assert set(family.headline) <= known and family.lower_is_better <= known  # no name the family never computes


def _toy_compute(predictions, references, profile, language="en"):
    hits = [float(len(p) == len(r)) for p, r in zip(predictions, references)]
    return MetricResult(
        "toy",
        profile,
        language,
        len(hits),
        {"misses": 100 * (1 - sum(hits) / len(hits))},
        {"misses": "%"},
        primary="misses",
        higher_is_better=False,
    )


TOY = MetricFamily(
    "toy",
    _toy_compute,
    {"plain": "length match"},
    "a family added in one place",
    reference=lambda ex: ex.target.upper(),
    prediction=lambda p: p["raw"],
    headline=("misses",),
    lower_is_better=frozenset({"misses"}),
    chance="most frequent length",
    by_language=True,
)


def test_a_new_family_is_read_by_evaluate_score_and_report(monkeypatch, tmp_path):
    monkeypatch.setitem(METRICS, "toy", TOY)
    task = dataclasses.replace(
        get_task("asr"), metric="toy", profile=None
    )  # a task spec names the family; nothing else changes
    monkeypatch.setattr(evaluate, "get_task", lambda name: task)
    examples = [
        Example(id=str(i), audio="x.wav", duration=1.0, task="asr", target=t) for i, t in enumerate(["ab", "abc"])
    ]
    chance = evaluate.chance_baselines(task, TOY, "plain", "en", examples)
    assert [c["name"] for c in chance] == ["most frequent length"] and chance[0][
        "prediction"
    ] == "AB"  # the family's reference
    entry = {
        "name": "b",
        "task": "asr",
        "task_spec": "asr",
        "metric": "toy",
        "profile": "plain",
        "language": "en",
        "examples": [e.__dict__ for e in examples],
        "results": {
            "qaudio": {
                "status": "ok",
                "predictions": [{"id": "0", "raw": "xy", "text": ""}, {"id": "1", "raw": "x", "text": ""}],
            }
        },
    }
    evaluate.score_entry(entry, bootstrap=0)
    assert entry["results"]["qaudio"]["metric"]["values"]["misses"] == 50.0  # scored the family's prediction field
    assert report.metric_label("misses", "%", report.family_of({"metric": "toy"})) == "misses % ↓"
    assert report.headline_metrics({**entry, "status": "ok"}) == [("misses", "%")]
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prediction": "ab", "reference": "cd", "text_lang": "de"}\n'
        '{"prediction": "a", "reference": "cd", "text_lang": "fr"}\n'
    )
    by_language = score.score_records(score.read_records(path, "toy"), task)
    assert {k: r.values["misses"] for k, r in by_language.items()} == {"de": 0.0, "fr": 100.0}
