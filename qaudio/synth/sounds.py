"""Synthesized sound-event clips for captioning and audio QA: what sounds, how often, in what order.

A clip is one to three *segments* in sequence, each of a different kind (beep, chirp, click,
knock, bell, hiss, hum) repeated ``count`` times, with attributes a listener can hear: pitch
(high or low; rising or falling for chirps), length (short or long), loudness (loud or quiet).
The attributes are drawn first and the audio is rendered from them, so captions and answers
(:mod:`qaudio.synth.captions`) are derived from the same facts as the waveform.

The kinds follow the sound-source vocabulary of Clotho captions (Drossos et al., "Clotho: An
Audio Captioning Dataset", ICASSP 2020): beeping, clicking, knocking, ringing, hissing,
humming, whistling (chirps). Each is a standard synthesis recipe: sine tones with ramps,
exponential sweeps, decaying broadband impulses, damped low resonances, inharmonic bell
partials (ratios after Rossing, "The Science of Sound", ch. 13), band-limited noise, and a
buzzing harmonic series.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from . import dsp
from .dsp import SR, seconds

MAX_SECONDS = 5.5  # clips longer than this are redrawn: keeps training fast


@dataclass(frozen=True)
class Segment:
    """One kind of sound, repeated ``count`` times; times are set when the clip is rendered."""

    kind: str
    count: int
    pitch: str | None  # high | low for beep and bell; rising | falling for chirp; else None
    length: str | None  # short | long for beep and hiss; else None
    loud: bool
    start: float = 0.0  # seconds, onset of the first repetition
    end: float = 0.0  # seconds, offset of the last repetition

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Kind:
    """What a kind of sound allows, and how one repetition of it sounds."""

    counts: tuple[int, int]  # inclusive range of repetitions
    pitches: tuple[str, ...]  # () when pitch is not an attribute
    lengths: tuple[str, ...]  # () when length is not an attribute
    gap_s: tuple[float, float]  # silence between repetitions
    render: Callable[[np.random.Generator, str | None, str | None], np.ndarray]  # (rng, pitch, length) -> samples


def _beep(rng, pitch, length):
    f = rng.uniform(1300, 2400) if pitch == "high" else rng.uniform(220, 420)
    d = rng.uniform(0.08, 0.15) if length == "short" else rng.uniform(0.45, 0.7)
    return dsp.ramp(dsp.tone(f, seconds(d)))


def _chirp(rng, pitch, length):
    lo, hi = rng.uniform(300, 500), rng.uniform(2000, 3200)
    n = seconds(rng.uniform(0.25, 0.45))
    f = np.geomspace(lo, hi, n) if pitch == "rising" else np.geomspace(hi, lo, n)
    return dsp.ramp(dsp.tone(f, n, (1.0, 0.2)), 0.01, 0.02)


def _click(rng, pitch, length):
    n = seconds(0.012)
    x = dsp.highpass(dsp.white(rng, n), 1500) * np.exp(-np.arange(n) / seconds(0.0015))
    return x / (np.max(np.abs(x)) + 1e-12)


def _knock(rng, pitch, length):
    n = seconds(0.15)
    f = rng.uniform(140, 260)
    body = dsp.damped((f, 2.3 * f), (1.0, 0.3), rng.uniform(0.02, 0.035), n)
    hit = dsp.lowpass(dsp.white(rng, n), 2000) * np.exp(-np.arange(n) / seconds(0.004))
    x = body + 0.5 * hit
    return x / (np.max(np.abs(x)) + 1e-12)


def _bell(rng, pitch, length):
    f = rng.uniform(900, 1500) if pitch == "high" else rng.uniform(280, 450)
    n = seconds(rng.uniform(0.9, 1.2))
    return dsp.ramp(
        dsp.damped((f, 2.0 * f, 2.76 * f, 5.4 * f), (1.0, 0.6, 0.4, 0.2), rng.uniform(0.25, 0.4), n), 0.002, 0.05
    )


def _hiss(rng, pitch, length):
    d = rng.uniform(0.2, 0.35) if length == "short" else rng.uniform(0.8, 1.1)
    return dsp.ramp(dsp.highpass(dsp.white(rng, seconds(d)), 1800) * 0.35, 0.01, 0.02)


def _hum(rng, pitch, length):
    n = seconds(rng.uniform(1.0, 1.4))
    f = rng.uniform(80, 130)
    x = dsp.tone(f, n, tuple(1 / k for k in range(1, 12)))  # sawtooth-like buzz
    x = dsp.lowpass(x, 1200) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(3, 6) * np.arange(n) / SR))
    return dsp.ramp(x, 0.05, 0.08)


KINDS: dict[str, Kind] = {
    "beep": Kind((1, 4), ("high", "low"), ("short", "long"), (0.1, 0.2), _beep),
    "chirp": Kind((1, 3), ("rising", "falling"), (), (0.12, 0.2), _chirp),
    "click": Kind((2, 6), (), (), (0.12, 0.22), _click),
    "knock": Kind((2, 5), (), (), (0.16, 0.26), _knock),
    "bell": Kind((1, 2), ("high", "low"), (), (0.15, 0.25), _bell),
    "hiss": Kind((1, 2), (), ("short", "long"), (0.15, 0.25), _hiss),
    "hum": Kind((1, 1), (), (), (0.0, 0.0), _hum),
}

LOUD_PEAK = (0.5, 0.7)  # peak amplitude of a loud segment
QUIET_PEAK = (0.04, 0.07)  # about 20 dB below loud


def draw_segments(rng: np.random.Generator) -> list[Segment]:
    """One to three segments of distinct kinds, with their attributes (times not yet set)."""
    n = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    kinds = rng.choice(list(KINDS), size=n, replace=False)
    out = []
    for k in kinds:
        spec = KINDS[str(k)]
        out.append(
            Segment(
                kind=str(k),
                count=int(rng.integers(spec.counts[0], spec.counts[1] + 1)),
                pitch=str(rng.choice(spec.pitches)) if spec.pitches else None,
                length=str(rng.choice(spec.lengths)) if spec.lengths else None,
                loud=bool(rng.random() < 0.5),
            )
        )
    return out


def render_clip(rng: np.random.Generator) -> tuple[np.ndarray, list[Segment]]:
    """An event clip and its segments with onset/offset times; redrawn until it fits MAX_SECONDS."""
    while True:
        segments = draw_segments(rng)
        pieces: list[tuple[int, np.ndarray]] = []  # (start sample, samples)
        timed = []
        at = seconds(rng.uniform(0.2, 0.4))  # leading silence
        for j, seg in enumerate(segments):
            spec = KINDS[seg.kind]
            peak = rng.uniform(*(LOUD_PEAK if seg.loud else QUIET_PEAK))
            gap = seconds(rng.uniform(*spec.gap_s))
            start = at
            for i in range(seg.count):
                x = spec.render(rng, seg.pitch, seg.length)
                x = x * (peak / (np.max(np.abs(x)) + 1e-12))
                pieces.append((at, x))
                at += len(x) + (gap if i + 1 < seg.count else 0)
            timed.append(Segment(**{**seg.__dict__, "start": round(start / SR, 3), "end": round(at / SR, 3)}))
            if j + 1 < len(segments):
                at += seconds(rng.uniform(0.3, 0.5))  # silence between segments
        total = at + seconds(rng.uniform(0.2, 0.4))  # trailing silence
        if total <= seconds(MAX_SECONDS):
            break
    canvas = dsp.colored(rng, total, 1.0) * dsp.db(rng.uniform(-62, -54))  # faint pink noise floor
    for start, x in pieces:
        dsp.place(canvas, x, start)
    return np.clip(canvas, -1, 1).astype(np.float32), timed
