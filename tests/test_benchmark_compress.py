"""benchmarks/compress.py: argument errors, the verdicts against the targets, and one variant's
quality columns (captioning CIDEr-D, emotion and scene accuracy) on a tiny random model, equal to
what `qaudio eval` reports for the same benchmarks, with a benchmark lacking test data skipped."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from benchmarks import compress
from qaudio.evaluate import EvalConfig, evaluate
from qaudio.report import MODEL
from qaudio.specs import get_suite
from qaudio.suite import Suite


def test_bad_arguments_are_named(tmp_path, capsys):
    assert compress.main(["--corpus", str(tmp_path), "--variants", "fp32,int3"]) == 2
    assert "unknown variant(s) int3" in capsys.readouterr().err
    assert compress.main(["--corpus", str(tmp_path), "--quality-clips", "-1"]) == 2
    assert "--quality-clips must be >= 0" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match=r"test.jsonl does not exist"):
        compress.english_asr_clips(tmp_path, 4)


def test_targets_are_judged_on_speed_memory_and_wer():
    row = {
        "latency_ms_b1": 100.0,
        "latency_ms_b8": 40.0,
        "peak_inference_mib": 200.0,
        "weights_mib": 100.0,
        "wer": 10.0,
    }
    fast = {
        **row,
        "latency_ms_b1": 50.0,
        "latency_ms_b8": 20.0,
        "peak_inference_mib": 90.0,
        "weights_mib": 40.0,
        "wer": 10.3,
    }
    (line,) = compress._against_targets({"fp32": row, "int8": fast})
    assert "2.00x (b1)" in line and line.endswith(": met")
    (line,) = compress._against_targets({"fp32": row, "int8": {**fast, "wer": 11.0}})
    assert line.endswith("MISSED")  # 1 WER point worse
    qlora = {
        "fp32": row,
        "lora": {"frozen_llm_mib": 10.0, "frozen_llm_linear_mib": 8.0, "peak_training_mib": 500.0},
        "qlora": {"frozen_llm_mib": 3.0, "frozen_llm_linear_mib": 2.0, "peak_training_mib": 450.0},
    }
    line = compress._against_targets(qlora)[-1]
    assert line.startswith("QLoRA frozen LLM 3.00 MiB vs bf16 LoRA's 10.00 MiB: 0.30x") and ": met" in line
    assert "Linear layers alone: 0.25x" in line


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> Path:
    from qaudio.config import PRESETS
    from qaudio.model import AudioLM

    torch.manual_seed(0)
    return AudioLM.build(PRESETS["tiny"]).save_pretrained(tmp_path_factory.mktemp("compress") / "model")


@pytest.mark.skipif(shutil.which("java") is None, reason="caption metrics need a Java runtime")
def test_a_variant_row_has_the_quality_columns_of_qaudio_eval(corpus, random_model, tmp_path, monkeypatch):
    from qaudio.metrics import caption

    # METEOR's Java run (~15 s here) is not a column: without it the caption metric still computes CIDEr-D for real.
    monkeypatch.setattr(caption, "BASE_METRICS", tuple(m for m in caption.BASE_METRICS if m != "meteor"))
    spec = {
        "variant": "fp32",
        "model": str(random_model),
        "clips": compress.english_asr_clips(corpus, 1),
        "batch_sizes": [1],
        "new_tokens": 2,
        "threads": 1,
        "corpus": str(corpus),
        "quality_clips": 2,
    }
    threads = torch.get_num_threads()
    try:
        row = compress.infer_worker(spec)
    finally:
        torch.set_num_threads(threads)
    assert row["quality_skipped"] == {} and row["quality_s"] > 0
    assert row["quality_n"] == dict.fromkeys(compress.QUALITY, 2)
    assert row["cider_d"] >= 0 and 0 <= row["emotion_accuracy"] <= 100 and 0 <= row["scene_accuracy"] <= 100
    # The same benchmarks through `qaudio eval` (the suite reads <data root>/synthetic) give the same values;
    # the classification ones only: captions take the same path, and eval's chance level would cost a Java run more.
    (tmp_path / "synthetic").symlink_to(corpus, target_is_directory=True)
    accuracies = {q.benchmark: (column, q.value) for column, q in compress.QUALITY.items() if q.value == "accuracy"}
    suite = Suite(
        name="quality", benchmarks=tuple(b for b in get_suite("synthetic").benchmarks if b.name in accuracies)
    )
    config = EvalConfig(model=str(random_model), data_root=str(tmp_path), limit=2, peers=False, bootstrap=0, quiet=True)
    benchmarks = evaluate(suite, config)["benchmarks"]
    assert sorted(b["name"] for b in benchmarks) == sorted(accuracies)
    for b in benchmarks:
        column, value = accuracies[b["name"]]
        assert row[column] == b["results"][MODEL]["metric"]["values"][value], column
    header = compress.quality_header([row], 2)
    assert header == [
        "quality on the test split, the first 2 examples of each synthetic-suite benchmark, scored as qaudio eval "
        "scores them: captioning CIDEr-D n=2, emotion accuracy n=2, scene accuracy n=2"
    ]


def test_a_benchmark_without_test_examples_is_skipped_with_the_reason(corpus, random_model, tmp_path):
    from qaudio.infer import Pipeline
    from qaudio.model import AudioLM

    # The corpus with its test split cut to ASR and scene examples: no caption or emotion example left.
    thin = tmp_path / "thin"
    thin.mkdir()
    for path in corpus.iterdir():
        if path.name != "test.jsonl":
            (thin / path.name).symlink_to(path)
    rows = [json.loads(line) for line in (corpus / "test.jsonl").read_text().splitlines()]
    (thin / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["task"] in ("asr", "asc")))
    out = compress.quality_scores(Pipeline(AudioLM.from_pretrained(random_model)), thin, 2)
    assert set(out["quality_skipped"]) == {"cider_d", "emotion_accuracy"}
    reason = out["quality_skipped"]["emotion_accuracy"]
    assert reason.startswith("synthetic emotion: data not found: ") and "yielded no examples of task 'ser'" in reason
    assert "cider_d" not in out and "emotion_accuracy" not in out
    assert out["quality_n"] == {"scene_accuracy": 2} and 0 <= out["scene_accuracy"] <= 100
    header = compress.quality_header([out], 2)
    assert header[0].endswith("scene accuracy n=2") and len(header) == 3
    assert header[2] == f"skipped: {reason.splitlines()[0]}"
