"""The numerics watchdog names the first module with a non-finite output, and the clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qaudio.config import PRESETS
from qaudio.data import Example
from qaudio.model import AudioLM
from qaudio.specs import get_task
from qaudio.training.batching import Batch
from qaudio.training.corpus import Item
from qaudio.training.watchdog import NumericsWatchdog

PROMPT = "<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>"


@pytest.fixture()
def setup(tmp_path):
    torch.manual_seed(0)
    model = AudioLM.build(PRESETS["tiny"], tokenizer_texts=["hello world", "a cat"])
    rng = np.random.default_rng(0)
    audios = [(0.1 * rng.standard_normal(16_000)).astype(np.float32) for _ in range(2)]
    batch = Batch(
        inputs=model.processor.prepare(audios, [PROMPT] * 2, ["hello world", "a cat"]),
        tasks=["asr"] * 2,
        ids=["u1", "u2"],
    )
    items = [
        Item(Example(id=i, audio=f"/data/{i}.wav", duration=1.0, task="asr", target="x"), get_task("asr"), "t")
        for i in ("u1", "u2")
    ]
    return model, batch, NumericsWatchdog(tmp_path, items, precision="bf16")


def test_watchdog_names_the_module_with_an_injected_nan(setup, tmp_path):
    model, batch, watchdog = setup
    with torch.no_grad():
        model.projector.fc2.weight[0, 0] = float("nan")  # the projector's second layer goes non-finite
    finding = watchdog.diagnose(model, [batch], step=7)
    assert finding["kind"] == "loss" and finding["module"] == "projector.fc2" and finding["inputs_finite"] is True
    assert finding["ids"] == ["u1", "u2"] and finding["audio"] == ["/data/u1.wav", "/data/u2.wav"]
    assert "--precision fp32" in finding["advice"] and "--lr" in finding["advice"]
    written = [json.loads(line) for line in (tmp_path / "numerics-rank0.jsonl").read_text().splitlines()]
    assert written == [finding] and written[0]["step"] == 7
    assert "projector.fc2" in watchdog.message(finding) and "/data/u1.wav" in watchdog.message(finding)
    assert all(p.grad is None for p in model.parameters())  # the replay leaves no gradient behind


def test_non_finite_data_and_gradients_are_told_apart(setup):
    model, batch, watchdog = setup
    bad_data = Batch(
        inputs={**batch.inputs, "input_features": batch.inputs["input_features"].clone()},
        tasks=batch.tasks,
        ids=batch.ids,
    )
    bad_data.inputs["input_features"][0, 0, 0] = float("inf")
    finding = watchdog.diagnose(model, [bad_data], step=1)
    assert finding["module"] == "audio_tower.conv1" and finding["inputs_finite"] is False
    assert "inputs are already non-finite" in finding["advice"]

    # A finite forward whose backward is not: the first module with a non-finite gradient.
    hook = model.projector.fc1.weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    finding = watchdog.diagnose(model, [batch], step=2)
    hook.remove()
    assert finding["kind"] == "gradient" and finding["module"] == "projector.fc1"

    finding = watchdog.diagnose(model, [batch], step=3)  # healthy: said so, not invented
    assert finding["module"] is None and "stayed finite" in finding["advice"]
