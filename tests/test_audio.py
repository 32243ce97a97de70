"""Audio loading: formats, rates, channels, and clear errors for bad input."""

import io

import numpy as np
import pytest
import soundfile as sf

from qaudio.audio import SAMPLE_RATE, AudioError, load_audio


def tone(sr=16000, seconds=0.5, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_formats_rates_and_stereo_become_16k_mono(tmp_path, fmt):
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, tone(sr=44100, channels=2), 44100, format=fmt)
    audio = load_audio(path)
    assert audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert abs(audio.duration - 0.5) < 0.01
    # the 440 Hz tone survives resampling: its spectrum peaks at 440 Hz
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(audio.samples) - 440) < 5


def test_bytes_and_arrays():
    buf = io.BytesIO()
    sf.write(buf, tone(), 16000, format="WAV")
    assert abs(load_audio(buf.getvalue()).duration - 0.5) < 1e-3
    channels_first = tone(sr=8000, channels=2).T  # (C, T) is accepted too
    assert abs(load_audio(channels_first, sample_rate=8000).duration - 0.5) < 1e-3
    pcm16 = (tone() * 32767).astype(np.int16)
    assert np.abs(load_audio(pcm16, sample_rate=16000).samples).max() <= 1.0


@pytest.mark.parametrize(
    "source, kwargs, message",
    [
        ("/no/such/file.wav", {}, "file not found"),
        (b"", {}, "empty input"),
        (b"RIFF....WAVEfmt garbage", {}, "cannot decode audio"),
        (np.full(1600, np.nan, dtype=np.float32), {"sample_rate": 16000}, "NaN or infinite"),
        (np.zeros(16000, dtype=np.float32), {"sample_rate": 16000}, "silent"),
        (np.ones(10, dtype=np.float32), {"sample_rate": 16000}, "expected at least 160"),
        (np.ones(1600, dtype=np.float32), {}, "needs its sample_rate"),
        (np.ones((2, 2, 2), dtype=np.float32), {"sample_rate": 16000}, "expected (samples,)"),
    ],
)
def test_bad_input_errors(source, kwargs, message):
    with pytest.raises(AudioError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_audio(source, **kwargs)


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.flac"
    sf.write(path, tone(seconds=2), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(AudioError, match="cut.flac"):
        load_audio(path)


def test_silence_allowed_when_asked():
    assert load_audio(np.zeros(1600, dtype=np.float32), sample_rate=16000, allow_silence=True).duration == 0.1
