"""AudioLM and its AudioProcessor on the tiny preset: the processor's layout, the slot check, the
loss (sums and counts), audio use, generation, saving the processor beside the weights."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qaudio.config import PRESETS
from qaudio.model import AudioLM, audio_token_count
from qaudio.tags import AUDIO_BOS, AUDIO_EOS, AUDIO_PLACEHOLDER

SR = 16000
PROMPTS = [
    "<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>",
    "<|startofanalysis|><|unknown|><|caption|><|en|><|notimestamps|><|caption_plain|>",
    "<|startoftranscript|><|de|><|translate|><|en|><|notimestamps|><|itn|>",
    "<|startofanalysis|><|en|><|question|>what is it?<|answer|>",
]
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
    batch = model.processor.prepare(AUDIOS, BATCH_PROMPTS, TARGETS)
    with torch.no_grad():
        states, lengths = model.encode(batch["input_features"], batch["feature_lengths"])
    cached = model.processor.prepare_from_features(
        [states[i, :n] for i, n in enumerate(lengths)], BATCH_PROMPTS, TARGETS
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    for _ in range(50):
        loss = model(**cached).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(**cached)
    per_example = out.loss_sum / out.target_tokens
    assert per_example.max() < 0.1, per_example  # each example learned
    return model


def _ids(model, text):
    return model.processor.tokenizer(text, add_special_tokens=False)["input_ids"]


# ---- The collator --------------------------------------------------------------------------


def test_training_layout_and_labels(model):
    batch = model.processor.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2])
    tok = model.processor.tokenizer
    for i in range(2):
        n = audio_token_count(len(AUDIOS[i]), model.config)
        expected = (
            [model.token_ids.audio_bos]
            + [model.token_ids.audio] * n
            + [model.token_ids.audio_eos]
            + _ids(model, PROMPTS[i])
            + _ids(model, TARGETS[i])
            + [tok.eos_token_id]
        )
        length = len(expected)
        assert batch["input_ids"][i, :length].tolist() == expected  # right padded
        assert batch["attention_mask"][i].tolist() == [1] * length + [0] * (batch["input_ids"].shape[1] - length)
        target_len = len(_ids(model, TARGETS[i])) + 1
        labels = batch["labels"][i].tolist()
        assert labels[: length - target_len] == [-100] * (length - target_len)  # audio slots and prompt
        assert labels[length - target_len : length] == expected[-target_len:]  # target + eos
        assert set(labels[length:]) <= {-100}  # padding
    assert tok.convert_ids_to_tokens([model.token_ids.audio_bos, model.token_ids.audio, model.token_ids.audio_eos]) == [
        AUDIO_BOS,
        AUDIO_PLACEHOLDER,
        AUDIO_EOS,
    ]


def test_generation_layout_is_left_padded(model):
    batch = model.processor.prepare(AUDIOS[:2], PROMPTS[:2])
    assert "labels" not in batch
    mask = batch["attention_mask"]
    assert mask[:, -1].all() and not mask[1, 0]  # the shorter sequence is padded on the left
    assert batch["input_ids"][1, mask[1].argmax()] == model.token_ids.audio_bos


def test_tags_are_single_tokens(model):
    ids = _ids(model, "<|0.00|>one<|0.32|><|startoftranscript|>")
    assert model.processor.tokenizer.convert_ids_to_tokens(ids) == [
        "<|0.00|>",
        "one",
        "<|0.32|>",
        "<|startoftranscript|>",
    ]


def test_prepare_from_features_matches_prepare(model):
    batch = model.processor.prepare(AUDIOS, BATCH_PROMPTS, TARGETS)
    with torch.no_grad():
        states, lengths = model.encode(batch["input_features"], batch["feature_lengths"])
        cached = model.processor.prepare_from_features(
            [states[i, :n] for i, n in enumerate(lengths)], BATCH_PROMPTS, TARGETS
        )
        for key in ("input_ids", "attention_mask", "labels"):
            assert torch.equal(cached[key], batch[key]), key
        assert cached["encoder_lengths"].tolist() == lengths.tolist()
        torch.testing.assert_close(model(**cached).loss_sum, model(**batch).loss_sum)


def test_bad_texts_are_refused(model):
    with pytest.raises(ValueError, match="2 clips but 1 prompts"):
        model.processor.prepare(AUDIOS[:2], PROMPTS[:1])
    with pytest.raises(ValueError, match=r"prompt 0 contains <\|AUDIO\|>; the audio slots are added by prepare"):
        model.processor.prepare(AUDIOS[:1], ["<|AUDIO|>"])
    with pytest.raises(ValueError, match="target 0 must be a string"):
        model.processor.prepare(AUDIOS[:1], PROMPTS[:1], [None])
    with pytest.raises(ValueError, match=r"encoder state 0 has shape \(3, 5\); expected \(frames in 1..1500, 64\)"):
        model.processor.prepare_from_features([torch.zeros(3, 5)], PROMPTS[:1])


# ---- Slots and loss ------------------------------------------------------------------------


def test_slot_count_mismatch_raises_with_both_counts(model):
    batch = model.processor.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2])
    slot = (batch["input_ids"][1] == model.token_ids.audio).nonzero()[0, 0]
    batch["input_ids"][1, slot] = model.processor.tokenizer.pad_token_id  # one slot fewer than features
    expected = audio_token_count(len(AUDIOS[1]), model.config)
    with pytest.raises(
        ValueError,
        match=f"example 1 has {expected - 1} <\\|AUDIO\\|> slots in input_ids but its "
        f"audio gives {expected} projector outputs",
    ):
        model(**batch)
    no_audio = {
        k: v
        for k, v in model.processor.prepare(AUDIOS[:1], PROMPTS[:1]).items()
        if k in ("input_ids", "attention_mask")
    }
    with pytest.raises(ValueError, match="slots per example but no audio was given"):
        model(**no_audio)


def test_loss_is_cross_entropy_over_target_tokens_only(model):
    batch = model.processor.prepare(AUDIOS, BATCH_PROMPTS, TARGETS)
    with torch.no_grad():
        out = model(**batch)
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits  # (B, L, V)
    # By hand: predict token t+1 at t, only where prepare put a target (target tokens + eos).
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    token_loss = F.cross_entropy(logits[:, :-1][keep], labels[keep], reduction="none")
    n_targets = [len(_ids(model, t)) + 1 for t in TARGETS]
    assert keep.sum(dim=1).tolist() == n_targets
    assert out.target_tokens.tolist() == n_targets  # the count of target tokens, from the forward itself
    rows = keep.nonzero()[:, 0]
    expected = torch.stack([token_loss[rows == i].sum() for i in range(len(TARGETS))])
    torch.testing.assert_close(out.loss_sum, expected)  # summed, not divided per example
    torch.testing.assert_close(out.loss, token_loss.mean())  # the batch mean over target tokens


def test_loss_sum_and_count_by_hand_on_a_tiny_batch(model):
    """Two examples, targets of 1 and 3 words: the forward's sum and count equal a hand computation
    from the logits, and training's token-weighted objective is sum(loss_sum) / sum(count)."""
    from qaudio.training.losses import batch_loss

    targets = ["one", "two two two"]
    batch = model.processor.prepare(AUDIOS[:2], PROMPTS[:2], targets)
    with torch.no_grad():
        out = model(**batch)
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()  # (B, L, V)
    eos = model.processor.tokenizer.eos_token_id
    for i, text in enumerate(targets):
        target = _ids(model, text) + [eos]
        end = int(batch["attention_mask"][i].sum())  # right padded: the real tokens come first
        start = end - len(target)
        assert batch["input_ids"][i, start:end].tolist() == target
        logp = torch.log_softmax(logits[i, start - 1 : end - 1], dim=-1)  # (T, V): position t predicts t+1
        nll = -logp[torch.arange(len(target)), torch.tensor(target)].sum()
        assert int(out.target_tokens[i]) == len(target)
        torch.testing.assert_close(out.loss_sum[i], nll, atol=1e-5, rtol=1e-5)
    token = batch_loss(out.loss_sum, out.target_tokens.float(), "token")
    torch.testing.assert_close(token, out.loss_sum.sum() / out.target_tokens.sum())
    example = batch_loss(out.loss_sum, out.target_tokens.float(), "example")
    torch.testing.assert_close(example, (out.loss_sum / out.target_tokens).mean())


def test_labels_on_audio_slots_and_padding_have_no_effect(model):
    batch = model.processor.prepare(AUDIOS, BATCH_PROMPTS, TARGETS)
    with torch.no_grad():
        reference = model(**batch).loss_sum
        corrupted = batch["labels"].clone()
        outside = (batch["input_ids"] == model.token_ids.audio) | (batch["attention_mask"] == 0)
        outside |= (batch["input_ids"] == model.token_ids.audio_bos) | (batch["input_ids"] == model.token_ids.audio_eos)
        corrupted[outside] = 7  # a real token id where no target may be
        assert outside.any()
        torch.testing.assert_close(model(**{**batch, "labels": corrupted}).loss_sum, reference)
        # A prompt position's label (-100 from prepare) is outside the loss too: giving it a
        # token id would add a term; prepare never does, and the loss above is target-only.
        prompt_position = int((batch["input_ids"][0] == model.token_ids.audio_eos).nonzero()[0, 0]) + 1
        assert batch["labels"][0, prompt_position] == -100


def test_loss_of_an_example_does_not_depend_on_its_batch(model):
    batch = model.processor.prepare(AUDIOS, BATCH_PROMPTS, TARGETS)
    with torch.no_grad():
        together = model(**batch).loss_sum
        for i in range(len(AUDIOS)):
            alone = model(**model.processor.prepare([AUDIOS[i]], [BATCH_PROMPTS[i]], [TARGETS[i]])).loss_sum
            torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=1e-5)


def test_the_audio_is_used(model):
    batch = model.processor.prepare([AUDIOS[0]], PROMPTS[:1], ["one"])
    other = model.processor.prepare([tone(2200, 1.0)], PROMPTS[:1], ["one"])  # same length, other sound
    assert torch.equal(batch["input_ids"], other["input_ids"])
    with torch.no_grad():
        a = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        b = model(**{k: v for k, v in other.items() if k != "labels"}).logits
    first_audio = int((batch["input_ids"][0] == model.token_ids.audio).nonzero()[0, 0])
    assert torch.equal(a[:, :first_audio], b[:, :first_audio])  # causal: nothing before the audio changes
    assert (a[:, -1] - b[:, -1]).abs().max() > 1e-4


def test_the_loss_depends_on_every_real_audio_frame_and_on_no_padding(model):
    batch = model.processor.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2])
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
        model(**model.processor.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2])).loss.backward()
        names = set(model.trainable_parameter_names())
        assert names and not any(n.startswith("audio_tower.") for n in names)
        assert {n for n, _ in model.projector.named_parameters()} == {
            n[len("projector.") :] for n in names if n.startswith("projector.")
        }
        for name, p in model.named_parameters():
            assert (p.grad is not None) == (name in names), name
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_bf16_autocast_forward(model):
    batch = model.processor.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2])
    with torch.no_grad():
        fp32 = model(**batch).loss
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(**batch).loss
    assert torch.isfinite(bf16) and abs(bf16.item() - fp32.item()) < 0.1


# ---- Generation ----------------------------------------------------------------------------


def test_generation_reproduces_the_trained_targets(trained):
    batch = trained.processor.prepare(AUDIOS, BATCH_PROMPTS)
    ids = trained.generate(batch, max_new_tokens=8)  # (B, new): the new tokens only
    assert trained.processor.batch_decode(ids) == TARGETS  # eos and padding removed


def test_batched_generation_equals_one_by_one(trained):
    batch = trained.processor.prepare(AUDIOS, BATCH_PROMPTS)
    for kwargs in ({}, {"num_beams": 3}):
        together = trained.processor.batch_decode(trained.generate(batch, max_new_tokens=8, **kwargs))
        alone = [
            trained.processor.batch_decode(
                trained.generate(trained.processor.prepare([a], [p]), max_new_tokens=8, **kwargs)
            )[0]
            for a, p in zip(AUDIOS, BATCH_PROMPTS)
        ]
        assert together == alone, kwargs
    # The next-token distribution itself, not only its argmax, is the same with left padding.
    with torch.no_grad():
        logits = trained(**batch).logits[:, -1]  # (B, V)
        for i, (a, p) in enumerate(zip(AUDIOS, BATCH_PROMPTS)):
            torch.testing.assert_close(
                trained(**trained.processor.prepare([a], [p])).logits[0, -1], logits[i], atol=1e-5, rtol=1e-5
            )


def test_sampling_and_generation_from_cached_states(trained):
    batch = trained.processor.prepare(AUDIOS, BATCH_PROMPTS)
    torch.manual_seed(0)
    sampled = trained.processor.batch_decode(
        trained.generate(batch, max_new_tokens=8, do_sample=True, top_k=3, num_return_sequences=2)
    )
    assert len(sampled) == 2 * len(AUDIOS) and all(isinstance(s, str) for s in sampled)
    with torch.no_grad():
        states, lengths = trained.encode(batch["input_features"], batch["feature_lengths"])
    cached = trained.processor.prepare_from_features([states[i, :n] for i, n in enumerate(lengths)], BATCH_PROMPTS)
    assert trained.processor.batch_decode(trained.generate(cached, max_new_tokens=8)) == TARGETS


def test_generate_refuses_training_batches(trained):
    with pytest.raises(ValueError, match="prepared without targets"):
        trained.generate(trained.processor.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2]))
    batch = trained.processor.prepare(AUDIOS[:2], PROMPTS[:2], TARGETS[:2])
    del batch["labels"]
    with pytest.raises(ValueError, match="needs left padding"):
        trained.generate(batch)


# ---- The processor beside the weights ------------------------------------------------------


def test_processor_is_saved_beside_the_weights_and_loads_with_the_model(trained, tmp_path):
    from qaudio.model import AudioProcessor, load_model_and_processor

    directory = trained.save_pretrained(tmp_path / "m")
    assert (directory / "tokenizer_config.json").is_file() and (directory / "preprocessor_config.json").is_file()
    processor = AudioProcessor.from_pretrained(directory)
    model, with_model = load_model_and_processor(directory)
    for p in (processor, with_model):
        assert p.token_ids == trained.processor.token_ids and p.config == trained.config
        batch = p.prepare(AUDIOS, BATCH_PROMPTS)
        assert torch.equal(batch["input_ids"], trained.processor.prepare(AUDIOS, BATCH_PROMPTS)["input_ids"])
    assert with_model.batch_decode(model.eval().generate(batch, max_new_tokens=8)) == TARGETS
    (directory / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        AudioProcessor.from_pretrained(directory)
