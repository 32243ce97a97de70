"""Rendering a report dict (no model): the paper-style table, notes, and the offline HTML page."""

from __future__ import annotations

import json
import re

import pytest

from qaudio.metrics import METRICS
from qaudio.report import FORMAT, read_report, render_html, render_markdown, table_rows, write_report


def _result(family: str, predictions: list, references: list, **options) -> dict:
    metric = METRICS[family](predictions, references, **options).to_dict(bootstrap=100)
    timing = {
        "audio_seconds": 10.0,
        "compute_seconds": 0.5,
        "real_time_factor": 0.05,
        "tokens_per_second": 40.0,
        "peak_memory_bytes": 300 * 2**20,
        "peak_memory_kind": "process peak RSS",
    }
    return {
        "status": "ok",
        "metric": metric,
        "timing": timing,
        "failed": 0,
        "predictions": [{"id": str(i), "text": p} for i, p in enumerate(predictions)],
    }


@pytest.fixture(scope="module")
def report() -> dict:
    refs = ["a b c d", "e f g h", "i j k l"]
    labels = ["sad", "happy", "sad", "neutral"]
    srwt_refs = [[["a", 0.0, 0.2]], [["b", 0.0, 0.3]]]
    return {
        "format": FORMAT,
        "created": "2026-01-01T00:00:00+00:00",
        "qaudio_version": "0.1.0",
        "suite": {"name": "unit <suite>", "description": "hand-made", "source": "unit"},
        "model": {"path": "/models/demo"},
        "environment": {"device": "cpu"},
        "systems": [{"name": "qaudio", "kind": "model"}, {"name": "peer", "kind": "peer", "note": "a peer's note"}],
        "benchmarks": [
            {
                "name": "speech",
                "task": "asr",
                "metric": "wer",
                "status": "ok",
                "num_examples": 3,
                "chance": [],
                "examples": [{"id": str(i), "target": r} for i, r in enumerate(refs)],
                "results": {
                    "qaudio": _result("wer", ["a b c x", "e f g h", "i j"], refs),
                    "peer": _result("wer", refs, refs),
                },
            },
            {
                "name": "emotion",
                "task": "ser",
                "metric": "accuracy",
                "status": "ok",
                "num_examples": 4,
                "chance": [
                    {"name": "uniform 1/3", "values": {"accuracy": 100 / 3}},
                    {"name": "majority class", "values": {"accuracy": 50.0}},
                ],
                "results": {"qaudio": _result("accuracy", ["sad", "sad", "sad", "happy"], labels)},
            },
            {
                "name": "timestamps",
                "task": "srwt",
                "metric": "timestamps",
                "status": "ok",
                "num_examples": 2,
                "chance": [],
                "results": {
                    "qaudio": _result("timestamps", ["<|0.00|>x<|0.20|>", ""], srwt_refs, profile="qaudio_words")
                },
            },
            {
                "name": "corpus X",
                "task": "asr",
                "metric": "wer",
                "status": "skipped",
                "num_examples": 0,
                "reason": "data not found: x: /data/X does not exist.\nExpected the official layout:\n  ROOT/a.tsv",
                "results": {},
            },
        ],
    }


def test_table_has_benchmarks_as_rows_and_systems_as_columns(report):
    header, rows = table_rows(report)
    assert header == ["Benchmark", "Task", "N", "Metric", "qaudio", "peer", "Chance", "Flags (qaudio)"]
    by_name = {r[0]: r for r in rows if r[0]}
    assert by_name["speech"][3] == "WER % ↓"
    assert re.fullmatch(r"25\.00 \[\d+\.\d\d, \d+\.\d\d\]", by_name["speech"][4])  # (1 + 2 edits) / 12 words
    assert by_name["speech"][5] == "0.00 [0.00, 0.00]"
    assert by_name["emotion"][5] == "—"  # the peer does not run on emotion
    assert by_name["emotion"][6] == "33.33 (uniform 1/3); 50.00 (majority class)"
    assert by_name["timestamps"][4] == "n/c"  # no word matched: AAS not computed, never a number
    assert by_name["corpus X"][3:5] == ["skipped", "skipped: data not found: x: /data/X does not exist."]


def test_markdown_notes_say_why_and_what_the_peer_means(report):
    md = render_markdown(report)
    assert md.startswith("# unit <suite>: /models/demo\n\nhand-made\n")
    assert "- peer: a peer's note" in md
    assert "- speech: profile qwen_audio follows QwenLM/Qwen-Audio eval_audio/evaluate_asr.py" in md
    assert re.search(r"- timestamps \(qaudio\): AAS, .* not computed: no predicted word matches", md)
    assert (
        "- corpus X skipped: data not found: x: /data/X does not exist. Expected the official layout: ROOT/a.tsv" in md
    )
    assert "| speech | qaudio | 10.0 | 0.50 | 0.0500 | 40.0 | 300 MiB (process peak RSS) |" in md


def test_html_escapes_text_and_embeds_every_plot(report):
    page = render_html(report)
    assert "<title>unit &lt;suite&gt;: /models/demo</title>" in page and "unit <suite>" not in page
    alts = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]+)"', page)
    assert alts == [
        "Scores per benchmark (bars: 95% bootstrap intervals; lines: chance levels)",
        "Confusion matrix: emotion (qaudio)",
    ]  # no duration data, no matched timestamps: no empty plots
    assert page.count("<details>") == 3  # per-benchmark details for the scored rows


def test_write_and_read_back(report, tmp_path):
    paths = write_report(report, tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["report.html", "report.json", "report.md"]
    assert read_report(paths["json"]) == json.loads(json.dumps(report))
    broken = dict(report, benchmarks=[{**report["benchmarks"][0], "audio_seconds": float("nan")}])
    with pytest.raises(ValueError):  # NaN is not JSON: never written
        write_report(broken, tmp_path / "bad")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_report(tmp_path / "x.json")


def test_the_report_says_how_much_training_the_model_had_and_plots_its_learning_curve(report):
    training = {
        "steps": 2000,
        "planned_steps": 2000,
        "stopped_early": False,
        "examples_seen": 64000,
        "audio_seconds_seen": 141000.0,
        "train_seconds": 560.0,
        "precision": "bf16",
        "threads": 2,
        "processes": 1,
        "machine": "a 2-core test CPU",
        "learning_curve": {"asr": [[0, 8.4], [400, 1.2], [2000, 0.2]], "ser": [[0, 8.3], [2000, 0.3]]},
    }
    with_training = dict(report, training=training)
    md = render_markdown(with_training)
    assert (
        "Model: trained 2,000 optimizer steps (64,000 examples, 39.2 h of audio) in 9.3 min, bf16, "
        "1 process(es) x 2 threads on a 2-core test CPU."
    ) in md
    alts = re.findall(r'alt="([^"]+)"', render_html(with_training))
    assert "Learning curve of the evaluated model: dev loss per task against optimizer steps" in alts
    cut = dict(training, steps=880, stopped_early=True)
    assert "STOPPED EARLY by the time budget at step 880 of 2000 planned" in render_markdown(dict(report, training=cut))
    assert "Model:" not in render_markdown(report)  # a model without training.json (e.g. a hub id)


def test_flag_counts_are_a_column_and_flagged_answers_are_listed(report):
    import copy

    flagged = copy.deepcopy(report)
    preds = flagged["benchmarks"][0]["results"]["qaudio"]["predictions"]
    for p, flags in zip(preds, (["repetition", "truncated"], [], ["repetition"]), strict=True):
        p["flags"] = flags
    preds[0]["raw"] = "a b c x " + "la " * 100
    for p in flagged["benchmarks"][1]["results"]["qaudio"]["predictions"]:
        p["flags"] = []
    rows = {r[0]: r for r in table_rows(flagged)[1] if r[0]}
    assert rows["speech"][-1] == "repetition 2, truncated 1"
    assert rows["emotion"][-1] == "none"  # checked, nothing found: said so
    assert rows["timestamps"][-1] == "n/a"  # a report from before answers were checked
    md = render_markdown(flagged)
    assert "speech: repetition 2, truncated 1" in md and "| repetition | 0 | a b c x la la" in md
    assert "truncated: generation stopped at max_new_tokens" in md
    assert "Flagged answers" in render_html(flagged) and "Flagged answers" not in render_markdown(report)


def test_a_benchmark_no_system_could_score_keeps_its_row_and_the_report_is_written(report, tmp_path):
    # An undertrained model's timestamps could not be scored: the row says why, and every file is written.
    unscored = json.loads(json.dumps(report))
    bench = next(b for b in unscored["benchmarks"] if b["name"] == "timestamps")
    bench["results"]["qaudio"] = {"status": "skipped", "reason": "could not be scored: no timed word"}
    _, rows = table_rows(unscored)
    row = next(r for r in rows if r[0] == "timestamps")
    assert row[3].startswith("AAS") and row[4] == "skipped: could not be scored: no timed word"
    paths = write_report(unscored, tmp_path)
    assert all(p.is_file() for p in paths.values())
