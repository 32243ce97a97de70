"""A second audio tower (AST) beside Whisper: counts, alignment, training, saving, the cache."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from qaudio import plan
from qaudio.config import PRESETS, ModelConfig, TowerConfig, resolve_model_config, with_overrides
from qaudio.model.lengths import (
    audio_token_count,
    encoder_frame_count,
    tower_frame_sources,
    tower_patch_grid,
    tower_window_count,
)
from qaudio.model.processor import audio_inputs

TEXTS = ["the cat sat on the mat", "a dog barks in the rain"] * 5
# A tiny AST: 32 mel bins, 1.28 s windows (128 frames), so a 2.5 s clip needs two of them.
TINY_TOWER = TowerConfig(n_mels=32, max_frames=128, d_model=32, layers=1, heads=2)
WINDOW = 128 * 160  # samples in one tiny tower window
LENGTHS = (1200, WINDOW, WINDOW + 480, 40_000, 70_000)  # 75 ms ... 4.4 s: one to four windows


def _config(train: str = "frozen", **tower: object) -> ModelConfig:
    return replace(ModelConfig(), towers=(replace(TINY_TOWER, train=train, **tower),))


def _build(config: ModelConfig):
    from qaudio.model import AudioLM

    torch.manual_seed(0)
    return AudioLM.build(config, tokenizer_texts=TEXTS)


def _clips(lengths=LENGTHS, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


@pytest.fixture(scope="module")
def dual():
    return _build(_config())


def test_the_alignment_rule_on_ast_geometry():
    ast = PRESETS["whisper-small-ast-qwen2.5-0.5b"]
    tower = ast.towers[0]
    assert tower_patch_grid(tower) == (12, 101)
    window, column = tower_frame_sources(1500, ast, tower)  # 30 s of Whisper frames (20 ms)
    assert column[:6].tolist() == [0, 0, 0, 0, 0, 1]  # a 100 ms column feeds five 20 ms frames
    assert (int(window[511]), int(column[511])) == (0, 100)  # mel frames 1010-1023: the last patch, clamped
    assert (int(window[512]), int(column[512])) == (1, 0)  # mel frame 1024 opens the second window
    assert tower_window_count(30 * 16_000, ast, tower) == 3
    assert tower_window_count(10 * 16_000, ast, tower) == 1
    # Qwen2-Audio's pooled tower: 40 ms frames, so a column feeds 2 or 3 of them
    pooled = with_overrides(ast, encoder={"kind": "qwen2-audio"})
    assert tower_frame_sources(6, pooled, tower)[1].tolist() == [0, 0, 0, 1, 1, 2]


def test_the_hub_preset_builds_the_right_shapes():
    config = resolve_model_config("whisper-small-ast-qwen2.5-0.5b")
    assert config.audio_width == 768 + 768
    _encoder, projector, _lm, towers = plan._meta_modules(config, vocab=151_936)
    (tower,) = towers
    # 12 x 101 patches plus [CLS] and [DIST], 768 wide: MIT/ast-finetuned-audioset-10-10-0.4593's table
    assert tuple(tower.embeddings.position_embeddings.shape) == (1, 1214, 768)
    assert projector.fc1.in_features == 4 * 1536  # four stacked frames of the fused width
    shapes = plan.model_shapes(config, "lora", 151_936)
    assert 85e6 < shapes.params["towers"] < 88e6  # AST base: about 86 M parameters


def test_fused_token_counts_equal_the_count_function(dual):
    clips = _clips()
    batch = dual.processor.prepare(clips, ["describe"] * len(clips))
    slots = (batch["input_ids"] == dual.token_ids.audio).sum(dim=1).tolist()
    whisper_only = replace(dual.config, towers=())
    for n, got in zip(LENGTHS, slots, strict=True):
        assert got == audio_token_count(n, dual.config) == audio_token_count(n, whisper_only)
    windows = batch["tower_windows_0"].tolist()
    assert windows == [tower_window_count(n, dual.config, dual.config.towers[0]) for n in LENGTHS]
    assert windows == [1, 1, 2, 2, 4]  # clips past the 1.28 s window are chunked, not cut
    with torch.no_grad():
        states, lengths = dual.encode(**audio_inputs(batch))
        _, counts = dual.projector(states, lengths)
    assert states.shape[-1] == dual.config.audio_width == 64 + 32
    assert lengths.tolist() == [encoder_frame_count(n) for n in LENGTHS]
    assert counts.tolist() == slots


def test_the_chunked_tail_reaches_the_features(dual):
    """Changing only the audio in the second tower window changes the tower features of the
    frames it feeds, and no others: the window is read, not dropped."""
    (clip,) = _clips((40_000,))
    changed = clip.copy()
    changed[WINDOW:] = 0.5 * np.sin(np.arange(len(clip) - WINDOW) / 3.0)
    with torch.no_grad():
        a, _ = dual.encode(**audio_inputs(dual.processor.prepare([clip], ["x"])))
        b, _ = dual.encode(**audio_inputs(dual.processor.prepare([changed], ["x"])))
    first = 128 // 2  # Whisper frames fed by the first tower window
    tower_a, tower_b = a[0, :, 64:], b[0, :, 64:]
    assert torch.equal(tower_a[:first], tower_b[:first])
    assert (tower_a[first:] - tower_b[first:]).abs().amax(dim=-1).min() > 1e-4


def test_wrong_or_missing_tower_inputs_are_refused(dual):
    batch = dual.processor.prepare(_clips((40_000,)), ["x"], ["the cat"])
    with pytest.raises(ValueError, match=r"brings 1 window.* read 2"):
        dual(**{**batch, "tower_windows_0": torch.tensor([1])})
    with pytest.raises(ValueError, match="tower_features_0"):
        dual(**{k: v for k, v in batch.items() if not k.startswith("tower_")})


@pytest.mark.parametrize("train", ["frozen", "lora"])
def test_the_tower_trains_as_configured_and_the_loss_falls(train):
    model = _build(_config(train))
    names = model.trainable_parameter_names()
    tower_names = [n for n in names if n.startswith("towers.")]
    if train == "frozen":
        assert tower_names == []
    else:
        assert tower_names and all("lora_" in n for n in tower_names)
    shapes = plan.model_shapes(
        model.config, model.config.trainable.llm, model.language_model.get_input_embeddings().weight.shape[0]
    )
    assert shapes.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert shapes.params["towers"] == sum(p.numel() for n, p in model.towers.named_parameters() if "lora_" not in n)
    batch = model.processor.prepare(_clips((8000, 24_000, 30_000, 12_000)), ["describe"] * 4, TEXTS[:4])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    losses = []
    for _ in range(6):
        loss = model(**batch).loss
        loss.backward()
        if train == "lora":
            grads = [p.grad for n, p in model.named_parameters() if n in tower_names]
            assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_save_and_load_give_identical_logits(tmp_path):
    from qaudio.model import AudioLM

    model = _build(_config("lora"))
    with torch.no_grad():  # move the LoRA B matrices off zero, so the adapters matter
        for name, p in model.towers.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    model.eval()
    batch = model.processor.prepare(_clips((9000, 30_000)), ["describe"] * 2)
    with torch.no_grad():
        before = model(**batch).logits
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert len(meta["towers"]) == 1 and meta["model"]["towers"][0]["train"] == "lora"
    assert (tmp_path / "adapters" / "towers.0" / "adapter_model.safetensors").is_file()
    loaded = AudioLM.from_pretrained(tmp_path).eval()
    assert loaded.config == model.config
    again = loaded.processor.prepare(_clips((9000, 30_000)), ["describe"] * 2)
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    with torch.no_grad():
        assert torch.equal(loaded(**again).logits, before)


def test_whisper_only_configs_and_checkpoints_are_unchanged(tmp_path):
    assert list(PRESETS["tiny"].to_dict()) == ["encoder", "projector", "llm", "trainable", "prompt_style"]
    assert ModelConfig.from_dict(PRESETS["tiny"].to_dict()) == PRESETS["tiny"]
    model = _build(ModelConfig())
    assert len(model.towers) == 0 and set(model.parameter_counts()) == {
        "audio_tower",
        "projector",
        "language_model",
        "total",
        "trainable",
    }
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert "towers" not in meta and "towers" not in meta["model"]
    assert not (tmp_path / "towers").exists()
    assert set(model.processor.prepare(_clips((8000,)), ["x"])) == {
        "input_features",
        "feature_lengths",
        "input_ids",
        "attention_mask",
    }


def test_the_cache_holds_the_fused_states_and_refuses_a_trained_tower(dual, tmp_path):
    from qaudio.training.feature_cache import FeatureCache, cache_for_training, encode_clips, encoder_identity

    clips = _clips((9000, 40_000))
    states = encode_clips(dual.processor, dual, clips)
    assert [tuple(s.shape) for s in states] == [(encoder_frame_count(len(c)), 96) for c in clips]
    identity = encoder_identity(dual, dual.processor, "fp32")
    assert identity["towers"][0]["config"]["max_frames"] == 128
    cache = FeatureCache(tmp_path, identity, "fp32")
    cache.write_shard({"a": states[0], "b": states[1]}, "r0")
    targets = ["the cat", "a dog"]
    cached = dual.processor.prepare_from_features([cache.get("a"), cache.get("b")], ["x", "x"], targets)
    direct = dual.processor.prepare(clips, ["x", "x"], targets)
    with torch.no_grad():
        assert torch.allclose(dual(**cached).loss_sum, dual(**direct).loss_sum, atol=1e-5)
    lora = SimpleNamespace(config=_config("lora"))
    with pytest.raises(ValueError, match="needs frozen audio towers"):
        cache_for_training(SimpleNamespace(cache_encoder=str(tmp_path)), lora, dual.processor, None, {}, None, "fp32")


def test_the_benchmark_rows_derive_their_configs_from_the_base():
    from benchmarks import compress

    base = PRESETS["tiny"]
    dual = compress.DERIVED_CONFIGS["dual"](base, {"dual_tower": "tiny-random"})
    assert [t.kind for t in dual.towers] == ["ast"] and dual.towers[0].train == "frozen"
    assert replace(dual, towers=()) == base and compress.DERIVED_CONFIGS["whisper-only"](base, {}) == base


def test_counts_hold_on_qwen2_audio_pooled_frames_with_30s_padding():
    model = _build(with_overrides(_config(), encoder={"kind": "qwen2-audio", "pad_to_30s": True}))
    lengths = (WINDOW - 160, 3 * WINDOW + 4000)
    batch = model.processor.prepare(_clips(lengths), ["x", "x"])
    assert batch["tower_windows_0"].tolist() == [1, 4]
    with torch.no_grad():
        states, frames = model.encode(**audio_inputs(batch))
        _, counts = model.projector(states, frames)
    assert counts.tolist() == (batch["input_ids"] == model.token_ids.audio).sum(dim=1).tolist()
    assert counts.tolist() == [audio_token_count(n, model.config) for n in lengths]
