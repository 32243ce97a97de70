"""benchmarks/compress.py without running it: argument errors and the verdicts against the targets."""

import pytest

from benchmarks import compress


def test_bad_arguments_are_named(tmp_path, capsys):
    assert compress.main(["--corpus", str(tmp_path), "--variants", "fp32,int3"]) == 2
    assert "unknown variant(s) int3" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="test.jsonl does not exist"):
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
