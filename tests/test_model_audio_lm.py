"""AudioLM on the tiny preset: the collator's layout, the slot check, the loss, audio use, generation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qaudio.config import PRESETS
from qaudio.model import AudioLM, audio_token_count
from qaudio.tags import AUDIO_BOS, AUDIO_EOS, AUDIO_PLACEHOLDER

SR = 16000
PROMPTS = ["<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>",
           "<|startofanalysis|><|unknown|><|caption|><|en|><|notimestamps|><|caption_plain|>",
           "<|startoftranscript|><|de|><|translate|><|en|><|notimestamps|><|itn|>",
           "<|startofanalysis|><|en|><|question|>what is it?<|answer|>"]
TARGETS = ["one", "two two", "three", "four five six"]


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


AUDIOS = [tone(300, 1.0), tone(700, 0.6), tone(1500, 1.3), tone(3000, 0.4)]
BATCH_PROMPTS = PROMPTS  # prompts of different lengths exercise the padding


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AudioLM.build(PRESETS["tiny"], TARGETS).eval()


@pytest.fixture(scope="module")
def trained():
    """A tiny model overfit on four (tone, prompt) -> text pairs, so that its greedy choices are
    decisive (no near-ties that rounding could flip) and differ between examples."""
    torch.manual_seed(0)
    model = AudioLM.build(PRESETS["tiny"], TARGETS)
    batch = model.prepare(AUDIOS, BATCH_PROMPTS, TARGETS)
    with torch.no_grad():
        states, lengths = model.encode(batch["input_features"], batch["feature_lengths"])
    cached = model.prepare_from_features([states[i, :n] for i, n in enumerate(lengths)], BATCH_PROMPTS, TARGETS)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    for _ in range(50):
        loss = model(**cached).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        per_example = model(**cached, reduction="none").loss
    assert per_example.max() < 0.1, per_example  # each example learned
    return model


def _ids(model, text):
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


# ---- The collator --------------------------------------------------------------------------


def test_training_layout_and_labels(model):
    batch = model.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2])
    tok = model.tokenizer
    for i in range(2):
        n = audio_token_count(len(AUDIOS[i]), model.config)
        expected = ([model.audio_bos_id] + [model.audio_token_id] * n + [model.audio_eos_id]
                    + _ids(model, PROMPTS[i]) + _ids(model, TARGETS[i]) + [tok.eos_token_id])
        length = len(expected)
        assert batch["input_ids"][i, :length].tolist() == expected  # right padded
        assert batch["attention_mask"][i].tolist() == [1] * length + [0] * (batch["input_ids"].shape[1] - length)
        target_len = len(_ids(model, TARGETS[i])) + 1
        labels = batch["labels"][i].tolist()
        assert labels[: length - target_len] == [-100] * (length - target_len)  # audio slots and prompt
        assert labels[length - target_len : length] == expected[-target_len:]  # target + eos
        assert set(labels[length:]) <= {-100}  # padding
    assert tok.convert_ids_to_tokens([model.audio_bos_id, model.audio_token_id, model.audio_eos_id]) == [
        AUDIO_BOS, AUDIO_PLACEHOLDER, AUDIO_EOS]


def test_generation_layout_is_left_padded(model):
    batch = model.prepare(AUDIOS[:2], PROMPTS[:2])
    assert "labels" not in batch
    mask = batch["attention_mask"]
    assert mask[:, -1].all() and not mask[1, 0]  # the shorter sequence is padded on the left
    assert batch["input_ids"][1, mask[1].argmax()] == model.audio_bos_id


def test_tags_are_single_tokens(model):
    ids = _ids(model, "<|0.00|>one<|0.32|><|startoftranscript|>")
    assert model.tokenizer.convert_ids_to_tokens(ids) == ["<|0.00|>", "one", "<|0.32|>", "<|startoftranscript|>"]


def test_prepare_from_features_matches_prepare(model):
    batch = model.prepare(AUDIOS, BATCH_PROMPTS, TARGETS)
    with torch.no_grad():
        states, lengths = model.encode(batch["input_features"], batch["feature_lengths"])
        cached = model.prepare_from_features([states[i, :n] for i, n in enumerate(lengths)], BATCH_PROMPTS, TARGETS)
        for key in ("input_ids", "attention_mask", "labels"):
            assert torch.equal(cached[key], batch[key]), key
        assert cached["encoder_lengths"].tolist() == lengths.tolist()
        torch.testing.assert_close(model(**cached, reduction="none").loss, model(**batch, reduction="none").loss)


def test_bad_texts_are_refused(model):
    with pytest.raises(ValueError, match="2 clips but 1 prompts"):
        model.prepare(AUDIOS[:2], PROMPTS[:1])
    with pytest.raises(ValueError, match=r"prompt 0 contains <\|AUDIO\|>; the audio slots are added by prepare"):
        model.prepare(AUDIOS[:1], ["<|AUDIO|>"])
    with pytest.raises(ValueError, match="target 0 must be a string"):
        model.prepare(AUDIOS[:1], PROMPTS[:1], [None])
    with pytest.raises(ValueError, match=r"encoder state 0 has shape \(3, 5\); expected \(frames in 1..1500, 64\)"):
        model.prepare_from_features([torch.zeros(3, 5)], PROMPTS[:1])


# ---- Slots and loss ------------------------------------------------------------------------


def test_slot_count_mismatch_raises_with_both_counts(model):
    batch = model.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2])
    slot = (batch["input_ids"][1] == model.audio_token_id).nonzero()[0, 0]
    batch["input_ids"][1, slot] = model.tokenizer.pad_token_id  # one slot fewer than features
    expected = audio_token_count(len(AUDIOS[1]), model.config)
    with pytest.raises(ValueError, match=f"example 1 has {expected - 1} <\\|AUDIO\\|> slots in input_ids but its "
                                         f"audio gives {expected} projector outputs"):
        model(**batch)
    no_audio = {k: v for k, v in model.prepare(AUDIOS[:1], PROMPTS[:1]).items() if k in ("input_ids", "attention_mask")}
    with pytest.raises(ValueError, match="slots per example but no audio was given"):
        model(**no_audio)


def test_loss_is_cross_entropy_over_target_tokens_only(model):
    batch = model.prepare(AUDIOS, BATCH_PROMPTS, TARGETS)
    with torch.no_grad():
        loss = model(**batch).loss
        per_example = model(**batch, reduction="none").loss
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits  # (B, L, V)
    # By hand: predict token t+1 at t, only where prepare put a target (target tokens + eos).
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    token_loss = F.cross_entropy(logits[:, :-1][keep], labels[keep], reduction="none")
    n_targets = [len(_ids(model, t)) + 1 for t in TARGETS]
    assert keep.sum(dim=1).tolist() == n_targets
    torch.testing.assert_close(loss, token_loss.mean())
    rows = keep.nonzero()[:, 0]
    expected = torch.stack([token_loss[rows == i].mean() for i in range(len(TARGETS))])
    torch.testing.assert_close(per_example, expected)


def test_labels_on_audio_slots_and_padding_have_no_effect(model):
    batch = model.prepare(AUDIOS, BATCH_PROMPTS, TARGETS)
    with torch.no_grad():
        reference = model(**batch, reduction="none").loss
        corrupted = batch["labels"].clone()
        outside = (batch["input_ids"] == model.audio_token_id) | (batch["attention_mask"] == 0)
        outside |= (batch["input_ids"] == model.audio_bos_id) | (batch["input_ids"] == model.audio_eos_id)
        corrupted[outside] = 7  # a real token id where no target may be
        assert outside.any()
        torch.testing.assert_close(model(**{**batch, "labels": corrupted}, reduction="none").loss, reference)
        # A prompt position's label (-100 from prepare) is outside the loss too: giving it a
        # token id would add a term; prepare never does, and the loss above is target-only.
        prompt_position = int((batch["input_ids"][0] == model.audio_eos_id).nonzero()[0, 0]) + 1
        assert batch["labels"][0, prompt_position] == -100


def test_loss_of_an_example_does_not_depend_on_its_batch(model):
    batch = model.prepare(AUDIOS, BATCH_PROMPTS, TARGETS)
    with torch.no_grad():
        together = model(**batch, reduction="none").loss
        for i in range(len(AUDIOS)):
            alone = model(**model.prepare([AUDIOS[i]], [BATCH_PROMPTS[i]], [TARGETS[i]]), reduction="none").loss
            torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=1e-5)


def test_the_audio_is_used(model):
    batch = model.prepare([AUDIOS[0]], PROMPTS[:1], ["one"])
    other = model.prepare([tone(2200, 1.0)], PROMPTS[:1], ["one"])  # same length, other sound
    assert torch.equal(batch["input_ids"], other["input_ids"])
    with torch.no_grad():
        a = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        b = model(**{k: v for k, v in other.items() if k != "labels"}).logits
    first_audio = int((batch["input_ids"][0] == model.audio_token_id).nonzero()[0, 0])
    assert torch.equal(a[:, :first_audio], b[:, :first_audio])  # causal: nothing before the audio changes
    assert (a[:, -1] - b[:, -1]).abs().max() > 1e-4


def test_the_loss_depends_on_every_real_audio_frame_and_on_no_padding(model):
    batch = model.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2])
    with torch.no_grad():
        states, lengths = model.encode(batch["input_features"], batch["feature_lengths"])
    states.requires_grad_(True)
    inputs = {k: v for k, v in batch.items() if k not in ("input_features", "feature_lengths")}
    model(**inputs, encoder_states=states, encoder_lengths=lengths).loss.backward()
    touched = states.grad.abs().sum(dim=-1) > 0  # (B, T')
    expected = torch.arange(states.shape[1]) < lengths[:, None]
    assert torch.equal(touched, expected)


def test_gradients_reach_what_trains_and_nothing_else(model):
    model.train()
    try:
        assert not model.audio_tower.training  # frozen: stays in eval mode
        model.zero_grad()
        model(**model.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2])).loss.backward()
        names = set(model.trainable_parameter_names())
        assert names and not any(n.startswith("audio_tower.") for n in names)
        assert {n for n, _ in model.projector.named_parameters()} == {n[len("projector."):] for n in names if n.startswith("projector.")}
        for name, p in model.named_parameters():
            assert (p.grad is not None) == (name in names), name
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_bf16_autocast_forward(model):
    batch = model.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2])
    with torch.no_grad():
        fp32 = model(**batch).loss
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(**batch).loss
    assert torch.isfinite(bf16) and abs(bf16.item() - fp32.item()) < 0.1


# ---- Generation ----------------------------------------------------------------------------


def test_generation_reproduces_the_trained_targets(trained):
    batch = trained.prepare(AUDIOS, BATCH_PROMPTS)
    assert trained.generate(batch, max_new_tokens=8) == TARGETS  # new tokens only, eos and padding removed


def test_batched_generation_equals_one_by_one(trained):
    batch = trained.prepare(AUDIOS, BATCH_PROMPTS)
    for kwargs in ({}, {"num_beams": 3}):
        together = trained.generate(batch, max_new_tokens=8, **kwargs)
        alone = [trained.generate(trained.prepare([a], [p]), max_new_tokens=8, **kwargs)[0]
                 for a, p in zip(AUDIOS, BATCH_PROMPTS)]
        assert together == alone, kwargs
    # The next-token distribution itself, not only its argmax, is the same with left padding.
    with torch.no_grad():
        logits = trained(**batch).logits[:, -1]  # (B, V)
        for i, (a, p) in enumerate(zip(AUDIOS, BATCH_PROMPTS)):
            torch.testing.assert_close(trained(**trained.prepare([a], [p])).logits[0, -1], logits[i], atol=1e-5, rtol=1e-5)


def test_sampling_and_generation_from_cached_states(trained):
    batch = trained.prepare(AUDIOS, BATCH_PROMPTS)
    torch.manual_seed(0)
    sampled = trained.generate(batch, max_new_tokens=8, do_sample=True, top_k=3, num_return_sequences=2)
    assert len(sampled) == 2 * len(AUDIOS) and all(isinstance(s, str) for s in sampled)
    with torch.no_grad():
        states, lengths = trained.encode(batch["input_features"], batch["feature_lengths"])
    cached = trained.prepare_from_features([states[i, :n] for i, n in enumerate(lengths)], BATCH_PROMPTS)
    assert trained.generate(cached, max_new_tokens=8) == TARGETS


def test_generate_refuses_training_batches(trained):
    with pytest.raises(ValueError, match="prepared without targets"):
        trained.generate(trained.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2]))
    batch = trained.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2])
    del batch["labels"]
    with pytest.raises(ValueError, match="needs left padding"):
        trained.generate(batch)
