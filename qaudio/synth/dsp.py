"""Small signal building blocks shared by the sound-event and scene generators (16 kHz mono).

Everything takes a ``numpy.random.Generator`` where it draws, so a clip is a pure function of
its seed. Filters are Butterworth second-order sections (scipy.signal), reverberation is a
convolution with exponentially decaying noise (Schroeder's model of a diffuse tail).
"""

from __future__ import annotations

import wave
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import fft, signal

SR = 16_000  # Hz


def seconds(n: float) -> int:
    """Samples in ``n`` seconds."""
    return round(n * SR)


def ramp(x: np.ndarray, attack_s: float = 0.005, release_s: float = 0.005) -> np.ndarray:
    """Raised-cosine fade in and out, so tones start and stop without a click."""
    x = x.copy()
    a, r = min(seconds(attack_s), len(x)), min(seconds(release_s), len(x))
    if a:
        x[:a] *= 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, a))
    if r:
        x[-r:] *= 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, r))
    return x


@lru_cache(maxsize=64)
def _sos(kind: str, freq: float | tuple[float, float], order: int) -> np.ndarray:
    return signal.butter(order, freq, btype=kind, fs=SR, output="sos")


def lowpass(x: np.ndarray, hz: float, order: int = 4) -> np.ndarray:
    return signal.sosfilt(_sos("lowpass", float(hz), order), x)


def highpass(x: np.ndarray, hz: float, order: int = 4) -> np.ndarray:
    return signal.sosfilt(_sos("highpass", float(hz), order), x)


def bandpass(x: np.ndarray, lo: float, hi: float, order: int = 2) -> np.ndarray:
    return signal.sosfilt(_sos("bandpass", (float(lo), float(hi)), order), x)


def white(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal(n)


def colored(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum 1/f**exponent (1: pink, 2: brown), unit RMS."""
    m = fft.next_fast_len(n, real=True)  # an FFT of a length with a large prime factor is slow
    spec = fft.rfft(rng.standard_normal(m))
    f = fft.rfftfreq(m, 1 / SR)
    f[0] = f[1] if m > 1 else 1.0
    x = fft.irfft(spec / f ** (exponent / 2), m)[:n]
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def smooth_envelope(rng: np.random.Generator, n: int, rate_hz: float, lo: float, hi: float) -> np.ndarray:
    """A slowly varying gain in [lo, hi]: random points ``rate_hz`` apart, cosine-interpolated."""
    points = max(int(n / SR * rate_hz) + 2, 2)
    values = rng.uniform(lo, hi, points)
    t = np.linspace(0, points - 1, n)
    i = np.minimum(t.astype(int), points - 2)
    frac = 0.5 - 0.5 * np.cos(np.pi * (t - i))
    return values[i] * (1 - frac) + values[i + 1] * frac


def tone(freq_hz: np.ndarray | float, n: int, harmonics: tuple[float, ...] = (1.0,)) -> np.ndarray:
    """A (possibly gliding) periodic tone: ``harmonics[k]`` is the amplitude of harmonic k+1."""
    f = np.broadcast_to(np.asarray(freq_hz, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f) / SR
    # start from zeros so that all-zero harmonics give silence of length n, not the scalar 0
    return sum((a * np.sin((k + 1) * phase) for k, a in enumerate(harmonics) if a), np.zeros(n))


def damped(freqs: tuple[float, ...], amps: tuple[float, ...], decay_s: float, n: int) -> np.ndarray:
    """Struck-object sound: sinusoidal partials under one exponential decay."""
    t = np.arange(n) / SR
    return np.exp(-t / decay_s) * sum(a * np.sin(2 * np.pi * f * t) for f, a in zip(freqs, amps, strict=True))


def reverb(x: np.ndarray, rng: np.random.Generator, rt60_s: float, wet: float) -> np.ndarray:
    """Add a diffuse tail: x convolved with noise decaying 60 dB over ``rt60_s``, mixed at ``wet``."""
    n = seconds(rt60_s)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * 10 ** (-3 * t / rt60_s)
    ir /= np.sqrt(np.sum(ir**2)) + 1e-12
    tail = signal.fftconvolve(x, ir)[: len(x)]
    return (1 - wet) * x + wet * tail


def place(canvas: np.ndarray, x: np.ndarray, start: int) -> None:
    """Add ``x`` into ``canvas`` at sample ``start``, cropping what falls outside."""
    a, b = max(start, 0), min(start + len(x), len(canvas))
    if b > a:
        canvas[a:b] += x[a - start : b - start]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def db(x: float) -> float:
    """Amplitude ratio for ``x`` decibels."""
    return 10 ** (x / 20)


def write_wav(path: str | Path, samples: np.ndarray) -> None:
    """Write 16 kHz mono PCM-16 WAV. The standard library's writer, because libsndfile's close
    fsyncs every file, which cost more than synthesizing the clip."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SR)
        f.writeframes(pcm.tobytes())


def to_level(x: np.ndarray, rms_db: float, peak: float = 0.98) -> np.ndarray:
    """Scale to an RMS of ``rms_db`` dBFS, then down if needed so no sample exceeds ``peak``."""
    y = x * (db(rms_db) / (rms(x) + 1e-12))
    top = float(np.max(np.abs(y))) if len(y) else 0.0
    return (y * (peak / top) if top > peak else y).astype(np.float32)
