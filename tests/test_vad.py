"""Voice-activity detection (Silero VAD, shipped in its PyPI package) on speech, silence and noise;
streaming events; and long-audio cuts placed in detected pauses rather than at energy minima."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("silero_vad")
espeak = pytest.importorskip("qaudio.synth.espeak")
if not espeak.available():
    pytest.skip("eSpeak NG (espeakng-loader) is not installed", allow_module_level=True)

from qaudio import vad  # noqa: E402
from qaudio.chunking import split_windows  # noqa: E402

SR = 16_000
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "a large red ball rolls down the hill",
    "please call stella and ask her to bring these things",
]


def spoken(i: int) -> np.ndarray:
    """One sentence, trimmed to its voiced words (no leading or trailing silence)."""
    clip = espeak.synthesize(SENTENCES[i % len(SENTENCES)], voice="en", rate=170)
    return clip.samples[int(clip.words[0][1] * SR) : int(clip.words[-1][2] * SR)]


def recording(n: int = 3, pause: float = 1.0, seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """``n`` utterances separated by ``pause`` s of faint noise: samples and the true (start, end) of each."""
    rng = np.random.default_rng(seed)
    parts, truth, t = [], [], pause / 2
    parts.append(np.zeros(int(pause / 2 * SR), np.float32))
    for i in range(n):
        s = spoken(i)
        truth.append((t, t + len(s) / SR))
        parts += [s, np.zeros(int(pause * SR), np.float32)]
        t += len(s) / SR + pause
    x = np.concatenate(parts)
    return (x + 0.002 * rng.standard_normal(len(x))).astype(np.float32), truth


def test_speech_is_found_and_silence_noise_and_tones_are_not():
    x, truth = recording(2)
    spans = vad.speech_spans(x)
    assert len(spans) == 2
    for (s, e), (ts, te) in zip(spans, truth):
        assert abs(s / SR - ts) < 0.15 and abs(e / SR - te) < 0.4
    rng = np.random.default_rng(1)
    t = np.arange(3 * SR) / SR
    for name, y in {
        "silence": np.zeros(3 * SR),
        "white noise": 0.1 * rng.standard_normal(3 * SR),
        "tone": 0.3 * np.sin(2 * np.pi * 440 * t),
    }.items():
        assert vad.speech_spans(y.astype(np.float32)) == [], name
        assert vad.speech_probabilities(y.astype(np.float32)).max() < 0.5, name


def test_streaming_events_match_the_utterances_whatever_the_chunk_size():
    x, truth = recording(3)
    for chunk in (160, 1000, 4096):
        stream, events = vad.StreamingVAD(), []
        for k in range(0, len(x), chunk):
            events += stream.feed(x[k : k + chunk])
        assert [kind for kind, _ in events] == ["start", "end"] * 3, chunk
        for (_, s), (_, e), (ts, te) in zip(events[::2], events[1::2], truth):
            assert abs(s / SR - ts) < 0.15 and abs(e / SR - te) < 0.4
            assert s % 16 == 0 and e % 16 == 0  # whole milliseconds: times in the protocol are exact
        assert stream.position == len(x) // vad.FRAME * vad.FRAME


def test_long_audio_is_cut_in_a_detected_pause_not_at_an_energy_minimum_inside_speech():
    # Continuous speech with one pause filled with loud noise (a door, traffic): the quietest
    # 100 ms frame of the search stretch is a gap between words, the only pause is loud.
    rng = np.random.default_rng(0)
    parts, t, i = [], 0.0, 0
    while t < 27.0:
        parts.append(spoken(i))
        t, i = t + len(parts[-1]) / SR, i + 1
    pause = (t, t + 0.8)
    parts.append((0.05 * rng.standard_normal(int(0.8 * SR))).astype(np.float32))
    while t < 40.0:
        parts.append(spoken(i))
        t, i = t + len(parts[-1]) / SR, i + 1
    x = np.concatenate(parts)
    with_vad = split_windows(x, 30.0, vad=True)[0].end / SR
    energy_only = split_windows(x, 30.0, vad=False)[0].end / SR
    assert pause[0] < with_vad < pause[1]
    assert not pause[0] < energy_only < pause[1]  # what the detector changes


def test_using_the_detector_keeps_torchs_thread_count():
    import subprocess
    import sys

    # A fresh process: importing silero_vad sets torch to one thread for the whole process.
    code = (
        "import torch, numpy as np; torch.set_num_threads(2); from qaudio import vad; "
        "assert vad.available(); vad.speech_spans(np.zeros(16000, np.float32)); vad.StreamingVAD(); "
        "print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"
