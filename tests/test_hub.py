"""``qaudio push``: the generated model card and the dry-run folder (offline).

The upload itself (``HfApi.create_repo`` + ``HfApi.upload_folder``) needs the hub and a
token, so it is not exercised here; everything it sends is what ``--dry-run`` writes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from test_infer_model import _clip, tiny_model_dir

import qaudio
from qaudio.cli import main as cli_main
from qaudio.hub import build_card
from qaudio.metrics import METRICS
from qaudio.report import FORMAT

REPO = "someone/qaudio-tiny"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    path = tiny_model_dir(run / "model")
    (run / "model" / "train_config.yaml").write_text(
        yaml.safe_dump({"recipes": "synthetic", "tasks": "asr,ser", "batch_size": 32, "lr": 1e-3})
    )
    log = [
        {"kind": "train", "step": 10, "position": 320, "task_examples": {"asr": 200, "ser": 120}, "elapsed_s": 5.0},
        {"kind": "train", "step": 20, "position": 640, "task_examples": {"asr": 190, "ser": 130}, "elapsed_s": 9.5},
        {"kind": "end", "step": 20, "seconds_this_run": 11.2, "processes": 1, "threads": 2, "precision": "bf16"},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    return path


@pytest.fixture(scope="module")
def report():
    refs = ["a b c d", "e f g h"]
    wer = METRICS["wer"](["a b c x", "e f g h"], refs).to_dict()
    acc = METRICS["accuracy"](["sad", "happy", "sad"], ["sad", "sad", "sad"]).to_dict()
    return {
        "format": FORMAT,
        "suite": {"name": "unit"},
        "benchmarks": [
            {
                "name": "synthetic asr",
                "task": "asr",
                "metric": "wer",
                "recipe": "synthetic",
                "split": "test",
                "status": "ok",
                "results": {"qaudio": {"status": "ok", "metric": wer}},
            },
            {
                "name": "synthetic emotion",
                "task": "ser",
                "metric": "accuracy",
                "recipe": "synthetic",
                "split": "test",
                "status": "ok",
                "results": {"qaudio": {"status": "ok", "metric": acc}},
            },
            {
                "name": "missing corpus",
                "task": "asr",
                "metric": "wer",
                "status": "skipped",
                "reason": "no data",
                "results": {},
            },
        ],
    }


def test_card_parses_and_its_model_index_gives_the_report_scores(model_dir, report, tmp_path):
    card = build_card(model_dir, REPO, report, license="apache-2.0")
    path = tmp_path / "README.md"
    card.save(path)
    loaded = ModelCard.load(path)  # the hub library's own parser
    data = loaded.data.to_dict()
    assert data["library_name"] == "qaudio" and data["license"] == "apache-2.0"
    name, results = model_index_to_eval_results(data["model-index"])  # raises on a malformed model-index
    assert name == "qaudio-tiny"
    scores = {(r.dataset_name, r.metric_type): r.metric_value for r in results}
    assert scores[("synthetic asr", "wer")] == pytest.approx(
        report["benchmarks"][0]["results"]["qaudio"]["metric"]["values"]["wer"]
    )
    assert scores[("synthetic emotion", "accuracy")] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert not any(r.dataset_name == "missing corpus" for r in results)  # skipped rows carry no number
    assert {r.task_type for r in results} == {"automatic-speech-recognition", "audio-classification"}
    text = loaded.text
    assert "<|startoftranscript|>" in text and 'qaudio.load("someone/qaudio-tiny")' in text
    assert "| examples seen | 640 |" in text and "| wall time (s) | 11.2 |" in text and "processes 1, threads 2" in text


def test_card_prefers_the_runs_summary_beside_the_weights(model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    summary = {
        "steps": 880,
        "planned_steps": 1000,
        "stopped_early": True,
        "examples_seen": 28160,
        "audio_seconds_seen": 7603.2,
        "train_seconds": 540.0,
        "precision": "bf16",
        "threads": 2,
        "processes": 1,
        "machine": "Some CPU",
    }
    (copy / "training.json").write_text(json.dumps(summary))
    text = build_card(copy, REPO).text
    assert (
        "| optimizer steps | 880 |" in text and "| examples seen | 28160 |" in text and "| machine | Some CPU |" in text
    )
    assert "at step 880 of 1000 planned" in text
    assert "closed" in text  # the scratch LLM's limitation is stated


def test_card_without_report_or_licence_says_so(model_dir):
    card = build_card(model_dir, REPO)
    assert "model-index" not in card.data.to_dict()
    assert card.data.license == "other" and card.data.license_name and card.data.license_link
    assert "No evaluation report was given" in card.text


def test_dry_run_folder_loads_with_qaudio_load(model_dir, report, tmp_path, capsys):
    (tmp_path / "report.json").write_text(json.dumps(report))
    out = tmp_path / "upload"
    code = cli_main(
        ["push", model_dir, "--repo-id", REPO, "--report", str(tmp_path / "report.json"), "--dry-run", str(out)]
    )
    assert code == 0 and "nothing uploaded" in capsys.readouterr().out
    assert (out / "README.md").is_file() and (out / "config.json").is_file() and (out / "train_config.yaml").is_file()
    original, pushed = qaudio.load(model_dir, device="cpu"), qaudio.load(str(out), device="cpu")
    for m in (original, pushed):
        m.max_new_tokens = 6
    clip = (_clip(1.0, 3), 16_000)
    assert pushed.transcribe(clip).text == original.transcribe(clip).text
    # A second dry run into the same folder is refused rather than mixing two uploads.
    assert cli_main(["push", model_dir, "--repo-id", REPO, "--dry-run", str(out)]) == 2


def test_bad_arguments_are_clear(model_dir, tmp_path, capsys):
    assert cli_main(["push", model_dir, "--repo-id", "no-slash", "--dry-run", str(tmp_path / "x")]) == 2
    assert "ORG/NAME" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["push", str(empty), "--repo-id", REPO, "--dry-run", str(tmp_path / "y")]) == 2
    assert "save_pretrained" in capsys.readouterr().err


def test_push_calls_the_hub_library_with_the_dry_run_contents(model_dir, report, tmp_path, monkeypatch):
    # The hub is not reachable offline: a stand-in HfApi records what qaudio asks of the library.
    import huggingface_hub

    from qaudio import hub

    calls = {}

    class RecordingApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=False, exist_ok=False, repo_type=None):
            calls["create"] = (repo_id, private, exist_ok, repo_type)

        def upload_folder(self, repo_id, folder_path, repo_type=None, commit_message=None):
            calls["files"] = sorted(
                p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()
            )
            calls["card"] = (Path(folder_path) / "README.md").read_text()
            return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    url = hub.push(model_dir, REPO, private=True, report=report, token="t")
    assert url.endswith("/commit/abc") and calls["token"] == "t"
    assert calls["create"] == (REPO, True, True, "model")
    dry = hub.stage(model_dir, hub.build_card(model_dir, REPO, report), tmp_path / "dry")
    assert calls["files"] == sorted(p.relative_to(dry).as_posix() for p in dry.rglob("*") if p.is_file())
    assert calls["card"] == (dry / "README.md").read_text()
