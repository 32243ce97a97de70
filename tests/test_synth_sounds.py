"""Sound events, scene textures and emotional prosody: labels that can be heard in the audio."""

import itertools

import numpy as np
import pytest

from qaudio.synth import dsp
from qaudio.synth.captions import captions, questions
from qaudio.synth.scenes import SCENES, render_scene
from qaudio.synth.sounds import MAX_SECONDS, render_clip

SR = dsp.SR


def _band_energy_db(x: np.ndarray) -> np.ndarray:
    """Log energy in 16 log-spaced bands: a crude, fixed spectral fingerprint."""
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    edges = np.geomspace(40, 8000, 17)
    return np.array([10 * np.log10(spec[(f >= a) & (f < b)].sum() + 1e-9) for a, b in itertools.pairwise(edges)])


def test_event_clips_match_their_segments():
    for seed in range(20):
        samples, segments = render_clip(np.random.default_rng(seed))
        assert samples.dtype == np.float32 and len(samples) <= MAX_SECONDS * SR
        assert len({s.kind for s in segments}) == len(segments)  # distinct kinds: questions are unambiguous
        for a, b in itertools.pairwise(segments):
            assert a.end < b.start
        for s in segments:  # a segment sounds where it says, and silence lies just before the first
            inside = samples[int(s.start * SR) : int(s.end * SR)]
            assert np.abs(inside).max() > 0.03
        lead = samples[: int(segments[0].start * SR) - 16]
        assert np.abs(lead).max() < 0.01


def test_loud_segments_are_louder_than_quiet_ones():
    for seed in range(40):
        samples, segments = render_clip(np.random.default_rng(seed))
        peaks = {s.loud: np.abs(samples[int(s.start * SR) : int(s.end * SR)]).max() for s in segments}
        if len(peaks) == 2:
            assert peaks[True] > 4 * peaks[False]


def test_captions_are_distinct_and_questions_fit_the_clip():
    rng = np.random.default_rng(0)
    _, segments = render_clip(rng)
    caps = captions(segments, rng)
    assert len(caps) == 5 == len(set(caps)) and all(c[0].isupper() and c.endswith(".") for c in caps)
    qs = questions(segments, rng, 2)
    assert len(qs) == 2 and len({t for _, _, t in qs}) == 2
    assert all(q.endswith("?") or q.endswith(".") for q, _, _ in qs)


def test_scene_textures_are_distinct_enough_to_classify():
    # nearest-centroid on band energies: two training renders per class, one held-out render
    babble = [dsp.colored(np.random.default_rng(i), SR * 2, 1.0) * np.sin(np.linspace(0, 40, SR * 2)) for i in range(8)]
    centroids, held_out = {}, {}
    for label in SCENES:
        feats = [_band_energy_db(render_scene(label, np.random.default_rng([seed, 9]), babble)) for seed in range(3)]
        feats = [f - f.mean() for f in feats]  # level-independent: the class is in the shape
        centroids[label], held_out[label] = np.mean(feats[:2], axis=0), feats[2]
    correct = sum(
        min(centroids, key=lambda c: np.sum((centroids[c] - f) ** 2)) == label for label, f in held_out.items()
    )
    assert correct >= len(SCENES) - 1


def test_scene_levels_carry_no_class_information():
    levels = [
        20 * np.log10(dsp.rms(render_scene(label, np.random.default_rng(1), [np.ones(SR)] * 8))) for label in SCENES
    ]
    assert all(-31 <= lv <= -19 for lv in levels)


def test_unknown_scene_and_missing_babble_are_clear_errors():
    with pytest.raises(ValueError, match="no texture for scene 'beach'"):
        render_scene("beach", np.random.default_rng(0))
    with pytest.raises(ValueError, match="needs 7 speech clips"):
        render_scene("crowdedindoor", np.random.default_rng(0), [])


def test_emotion_prosody_orders_rate_and_loudness():
    espeak = pytest.importorskip("qaudio.synth.espeak")
    if not espeak.available():
        pytest.skip("eSpeak NG is not installed")
    from qaudio.synth.voices import EMOTIONS

    mid = lambda r: (r[0] + r[1]) // 2  # noqa: E731
    clips = {
        label: espeak.synthesize(
            "the teacher buys the red apple", "en+m3", **{k: mid(v) for k, v in p.__dict__.items()}
        )
        for label, p in EMOTIONS.items()
    }
    durations = {label: c.duration for label, c in clips.items()}
    loudness = {label: dsp.rms(c.samples) for label, c in clips.items()}
    assert durations["sad"] > durations["neutral"] > durations["happy"] > durations["angry"]
    assert loudness["angry"] > loudness["happy"] > loudness["neutral"] > loudness["sad"]
