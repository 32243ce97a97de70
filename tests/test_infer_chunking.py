"""Long audio: cut points fall in pauses, windows cover the clip, and word times are shifted.

The stitching test runs :class:`qaudio.infer.Pipeline` over a stand-in model that
"transcribes" every burst of sound in a window as one word with its window-relative times
(what a perfect timestamped ASR model would say), so the stitched absolute times can be
checked exactly against where the bursts really are.
"""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.standin_lm import StandInLM

from qaudio.audio import SAMPLE_RATE
from qaudio.chunking import Window, frame_rms, join_texts, shift_words, split_windows
from qaudio.infer import Pipeline
from qaudio.tags import time_token

SR = SAMPLE_RATE


def _noise(seconds: float, amplitude: float, rng) -> np.ndarray:
    return (amplitude * rng.standard_normal(int(round(seconds * SR)))).astype(np.float32)


def _clip_with_gaps(total: float, gaps: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    """Loud noise everywhere except near-silent gaps (a faint noise floor, not digital zero)."""
    rng = np.random.default_rng(seed)
    x = _noise(total, 0.3, rng)
    for a, b in gaps:
        x[int(a * SR) : int(b * SR)] = _noise(b - a, 0.003, rng)
    return x


def test_short_clip_is_one_window():
    assert split_windows(np.ones(SR * 10, dtype=np.float32), 30.0) == [Window(0, SR * 10)]
    assert split_windows(np.ones(SR * 30, dtype=np.float32), 30.0) == [Window(0, SR * 30)]  # exactly the limit
    assert len(split_windows(np.ones(SR * 30 + 1, dtype=np.float32), 30.0)) == 2


def test_cuts_fall_in_the_pauses_near_each_window_end():
    gaps = [(12.0, 12.4), (27.0, 27.3), (54.0, 54.4)]  # 12.0 is too early to be chosen for the first cut
    x = _clip_with_gaps(75.0, gaps)
    windows = split_windows(x, 30.0)
    assert len(windows) == 3
    assert windows[0].start == 0 and windows[-1].end == len(x)
    for a, b in zip(windows, windows[1:]):
        assert a.end == b.start  # contiguous, nothing lost or repeated
    for w in windows:
        assert 0 < w.end - w.start <= 30 * SR
    for cut, (a, b) in zip([w.end for w in windows[:-1]], gaps[1:]):
        assert a * SR <= cut <= b * SR, (cut / SR, a, b)


def test_without_pauses_windows_still_fit_the_encoder():
    x = _noise(100.0, 0.3, np.random.default_rng(1))
    windows = split_windows(x, 30.0)
    assert len(windows) == 4
    assert all(w.end - w.start <= 30 * SR for w in windows)
    assert all(w.end - w.start >= 25 * SR for w in windows[:-1])  # cut within the 5-s search span


def test_frame_rms_counts_only_real_samples_in_the_last_frame():
    x = np.ones(250, dtype=np.float32)
    np.testing.assert_allclose(frame_rms(x, 100), [1.0, 1.0, 1.0])


def test_split_windows_rejects_bad_settings():
    with pytest.raises(ValueError, match="search_seconds"):
        split_windows(np.ones(10), 30.0, search_seconds=40.0)


def test_join_and_shift():
    assert join_texts(["hello ", "", "world"], "en") == "hello world"
    assert join_texts(["你好", "世界"], "zh") == "你好世界"
    assert shift_words([("a", 0.5, 1.0)], 27.25) == [("a", 27.75, 28.25)]


class BurstLM(StandInLM):
    """Stands in for AudioLM: each burst of sound in a window becomes <|start|>wN<|end|>."""

    def __init__(self):
        super().__init__()
        self.batch_sizes = []

    def generate(self, batch, max_new_tokens=128, **kwargs):
        self.batch_sizes.append(len(batch["audios"]))
        out = []
        for x in batch["audios"]:
            loud = frame_rms(x, 160) > 0.05  # 10-ms frames
            edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(int), [0]])))
            out.append("".join(f"{time_token(s / 100)}w{time_token(e / 100)}" for s, e in zip(edges[::2], edges[1::2])))
        return out


def test_long_clip_words_are_stitched_with_absolute_times():
    # 0.4-s "words" every 0.6 s (0.2-s pauses) for 80 s: every cut must land in a pause.
    rng = np.random.default_rng(2)
    x = _noise(80.0, 0.002, rng)
    onsets = np.round(np.arange(0.1, 79.5, 0.6), 2)
    for t in onsets:
        x[int(round(t * SR)) : int(round((t + 0.4) * SR))] = _noise(0.4, 0.3, rng)
    lm = BurstLM()
    model = Pipeline(lm, batch_size=8)
    result = model.transcribe((x, SR), timestamps=True)
    assert result.ok and result.timing["windows"] == 3
    assert len(lm.batch_sizes) == 1 and lm.batch_sizes[0] == 3  # the windows ran as one batch
    starts = np.array([w.start for w in result.words])
    ends = np.array([w.end for w in result.words])
    assert len(result.words) == len(onsets)  # no word was cut in two or lost
    np.testing.assert_allclose(starts, onsets, atol=0.011)
    np.testing.assert_allclose(ends, onsets + 0.4, atol=0.011)
    assert [s.start for s in result.segments][0] == 0.0 and result.segments[-1].end == pytest.approx(80.0)
    assert all(b.start == a.end for a, b in zip(result.segments, result.segments[1:]))
    assert result.text == " ".join(["w"] * len(onsets))


def test_silent_windows_of_a_long_clip_are_skipped():
    rng = np.random.default_rng(3)
    x = np.zeros(SR * 70, dtype=np.float32)
    x[SR * 1 : SR * 2] = _noise(1.0, 0.3, rng)  # sound only in the first window
    lm = BurstLM()
    result = Pipeline(lm).transcribe((x, SR), timestamps=True)
    assert result.timing["windows"] == 1 and lm.batch_sizes == [1]
    assert [(w.start, w.end) for w in result.words] == [(1.0, 2.0)]
