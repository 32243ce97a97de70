"""QLoRA (``--train-llm qlora``) on the tiny preset: the LLM's Linear layers held frozen in 4-bit
NF4 (bitsandbytes), LoRA adapters and the tag-token rows in float32. The loss falls; a run killed
after a checkpoint resumes with the losses of an uninterrupted one; a saved model loads back to
the same logits, adapters separate or merged."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import qaudio.train as train_module
from qaudio.config import PRESETS, with_overrides
from qaudio.model import AudioLM
from qaudio.model.trainable import unwrap
from qaudio.training.config import TrainConfig
from qaudio.training.metrics_log import read_metrics

bnb = pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (pip install 'qaudio[compress]')")

TEXTS = ["one two three", "four five", "six seven eight nine", "ten"]
RNG = np.random.default_rng(0)
AUDIOS = [(0.1 * RNG.standard_normal(n)).astype(np.float32) for n in (9000, 5000)]
PROMPTS = ["<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>"] * 2


def _qlora_model() -> AudioLM:
    torch.manual_seed(0)
    return AudioLM.build(with_overrides(PRESETS["tiny"], trainable={"llm": "qlora", "lora_r": 4}), TEXTS)


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**model.processor.prepare(AUDIOS, PROMPTS)).logits


def test_the_base_is_4bit_and_frozen_while_lora_and_tag_rows_train():
    model = _qlora_model()
    llm = unwrap(model.language_model)
    linears = {name: type(m).__name__ for name, m in llm.named_modules() if name.endswith(("q_proj", "down_proj"))}
    assert linears and set(linears.values()) == {"Linear4bit"}, linears  # peft's 4-bit LoRA layer
    assert isinstance(llm.model.layers[0].mlp.down_proj, bnb.nn.Linear4bit)  # no adapter there: the plain 4-bit layer
    assert llm.model.layers[0].mlp.down_proj.weight.dtype == torch.uint8  # two NF4 codes per byte
    names = model.trainable_parameter_names()
    assert any(".lora_A." in n for n in names) and any("token_adapter" in n for n in names)
    assert all(".lora_" in n or "token_adapter" in n or n.startswith("projector.") for n in names), names
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if p.requires_grad)


def test_the_qlora_loss_falls():
    model = _qlora_model().train()
    batch = model.processor.prepare(AUDIOS, PROMPTS, TEXTS[:2])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    lines = []
    for i in range(8):
        path = root / f"clip{i}.wav"
        sf.write(path, (0.1 * RNG.standard_normal(4000 + 800 * i)).astype(np.float32), 16000)
        lines.append(
            json.dumps(
                {
                    "id": f"clip{i}",
                    "audio": str(path),
                    "duration": (4000 + 800 * i) / 16000,
                    "task": "asr",
                    "target": TEXTS[i % len(TEXTS)],
                }
            )
        )
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _train_config(corpus: Path, out: Path, **extra) -> TrainConfig:
    values = dict(
        model="tiny",
        recipes=f"manifest:{corpus}",
        tasks="asr",
        dev_split="none",
        output_dir=str(out),
        precision="fp32",
        threads=1,
        batch_size=4,
        max_steps=3,
        log_every=1,
        save_every=2,
        progress=False,
        tensorboard=False,
        plot=False,
        train_llm="qlora",
        lora_r=4,
    )
    return TrainConfig(**{**values, **extra})


class Killed(Exception):
    """Stands for SIGKILL right after a checkpoint."""


@pytest.mark.slow
def test_a_killed_qlora_run_resumes_with_the_same_losses_and_saves_a_model_that_loads_back(
    corpus, tmp_path, monkeypatch
):
    real = train_module.save_checkpoint

    def save_then_die(*args, **kwargs):
        raise Killed(real(*args, **kwargs))

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            train_module.train(_train_config(corpus, tmp_path / "killed"))
    resumed = train_module.train(_train_config(corpus, tmp_path / "killed", train_llm=None, lora_r=None))
    train_module.train(_train_config(corpus, tmp_path / "whole"))
    losses = [{r["step"]: r["loss"] for r in read_metrics(tmp_path / run, "train")} for run in ("killed", "whole")]
    assert list(losses[0]) == [1, 2, 3] and losses[0] == losses[1]  # exact: the same 4-bit codes, data and RNG

    model = AudioLM.from_pretrained(resumed)
    assert model.config.trainable.llm == "qlora" and unwrap(model.language_model).is_loaded_in_4bit
    logits = _logits(model)
    again = AudioLM.from_pretrained(model.save_pretrained(tmp_path / "again"))
    torch.testing.assert_close(_logits(again), logits, atol=1e-6, rtol=0)  # the 4-bit codes survive a round trip
    # Merged, peft's 4-bit layer rounds base + LoRA to NF4 again: close, not equal.
    merged = AudioLM.from_pretrained(model.save_pretrained(tmp_path / "merged", merge_lora=True))
    assert (_logits(merged) - logits).abs().max().item() < 0.2
