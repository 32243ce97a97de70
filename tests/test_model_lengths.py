"""The one audio-token count: checked against the feature extractor, the conv stem and every projector."""

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from qaudio.config import PRESETS, ProjectorConfig, with_overrides
from qaudio.model import PROJECTORS, audio_token_count, encoder_frame_count, mel_frame_count
from qaudio.model.encoder import load_audio_tower
from qaudio.model.lengths import max_samples, max_seconds
from qaudio.model.projectors import build_projector

SAMPLE_COUNTS = [160, 161, 319, 320, 16000, 16001, 44_100, 123_457, 480_000]


# The stock extractor's reflect padding needs more than n_fft/2 samples; AudioProcessor.prepare
# appends zeros first, so shorter clips are covered by the AudioLM tests.
@pytest.mark.parametrize("num_samples", [n for n in SAMPLE_COUNTS if n > 200])
def test_mel_frames_match_the_whisper_feature_extractor(num_samples):
    extractor = WhisperFeatureExtractor(feature_size=80)
    features = extractor(
        np.zeros(num_samples, dtype=np.float32), sampling_rate=16000, padding="longest", return_tensors="np"
    )["input_features"]
    assert features.shape[-1] == mel_frame_count(num_samples)


def test_encoder_frames_match_the_conv_stem():
    encoder, _ = load_audio_tower(PRESETS["tiny"].encoder)
    for mel_frames in (1, 2, 3, 4, 99, 100, 101, 2999, 3000):
        x = torch.zeros(1, 80, mel_frames)
        out = encoder.conv2(encoder.conv1(x))  # (1, D, T')
        assert out.shape[-1] == encoder_frame_count(mel_frames=mel_frames), mel_frames


def test_known_values():
    assert mel_frame_count(16000) == 100 and encoder_frame_count(16000) == 50
    assert encoder_frame_count(480_000) == 1500 and max_samples() == 480_000 and max_seconds() == 30.0
    config = PRESETS["demo"]  # stack 4: 12.5 tokens a second
    assert audio_token_count(16000, config) == 13 and audio_token_count(480_000, config) == 375
    qformer = with_overrides(config, projector={"name": "qformer", "num_queries": 2, "hidden": 64, "qformer_heads": 4})
    assert audio_token_count(16000, qformer) == 26


def test_the_three_units_agree_and_work_on_tensors():
    config = PRESETS["tiny"]
    for n in SAMPLE_COUNTS:
        by_samples = audio_token_count(n, config)
        assert by_samples == audio_token_count(None, config, mel_frames=mel_frame_count(n))
        assert by_samples == audio_token_count(None, config, encoder_frames=encoder_frame_count(n))
    counts = torch.tensor(SAMPLE_COUNTS)
    assert audio_token_count(counts, config).tolist() == [audio_token_count(n, config) for n in SAMPLE_COUNTS]


def test_exactly_one_unit_must_be_given():
    with pytest.raises(
        ValueError, match="give exactly one of num_samples, mel_frames, encoder_frames; got num_samples, mel_frames"
    ):
        audio_token_count(16000, PRESETS["tiny"], mel_frames=100)
    with pytest.raises(ValueError, match="got none"):
        encoder_frame_count()


@pytest.mark.parametrize("name", sorted(PROJECTORS))
@pytest.mark.parametrize("stack", [1, 3, 4])
def test_every_projector_returns_audio_token_count_outputs(name, stack):
    config = with_overrides(
        PRESETS["tiny"], projector={"name": name, "stack": stack, "hidden": 32, "num_queries": 2, "qformer_heads": 4}
    )
    projector = build_projector(config.projector, in_dim=16, out_dim=24)
    lengths = torch.tensor([1, 2, 5, 17, 40])  # encoder frames
    states = torch.randn(len(lengths), int(lengths.max()), 16)
    out, counts = projector(states, lengths)
    expected = [audio_token_count(None, config, encoder_frames=int(n)) for n in lengths]
    assert counts.tolist() == expected
    assert out.shape == (len(lengths), max(expected), 24)
    assert PROJECTORS[name].output_length(40, config.projector) == expected[-1]


def test_projector_config_names_are_the_registry():
    from qaudio.config import PROJECTOR_NAMES

    assert tuple(PROJECTORS) == PROJECTOR_NAMES
    assert ProjectorConfig().name in PROJECTORS
