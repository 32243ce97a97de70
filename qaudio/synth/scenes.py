"""Acoustic-scene textures: one synthesized background per scene class, for scene classification.

Labels are CochlScene classes (Jeong and Park, "CochlScene: Acquisition of acoustic scene data
using crowdsourcing", APSIPA 2022; the label set of ``tasks/asc.py``). Only the seven classes
whose typical sound a procedural texture can imitate are made; each texture is built from
the sources that define the place, so classes differ in spectrum, rhythm and events:

===============  ============================================================================
street           traffic rumble (low brown noise), cars passing (swelling band noise with a
                 falling engine tone), now and then a horn
crowdedindoor    babble: six to eight eSpeak voices in three languages talking over each
                 other, in a reverberant hall
park             wind in gusts (low-passed noise) and bird trills (fast high whistles)
elevator         mains hum and motor whine in a small box, ventilation, often a "ding"
kitchen          clinking dishes (bright damped partials), running water or sizzling, fridge hum
restroom         running water like rain (dense droplets), a hand dryer, tiled-room reverb
subway           heavy low rumble, rhythmic wheel clacks, wheel screech
===============  ============================================================================

The corpus lays a speaker on top of half the clips (:func:`mix_speech`); the label stays the scene.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import dsp
from .dsp import SR, seconds

DURATION_S = 4.0


def _street(rng, n, babble):
    x = dsp.lowpass(dsp.colored(rng, n, 2.0), 250) * dsp.smooth_envelope(rng, n, 0.4, 0.6, 1.0)
    for _ in range(int(rng.integers(1, 4))):  # passing cars
        center, width = rng.uniform(0.5, 3.5), rng.uniform(0.5, 1.0)
        t = np.arange(n) / SR
        env = np.exp(-0.5 * ((t - center) / width * 2.5) ** 2)
        f = rng.uniform(70, 110) * (1 + 0.08 * np.tanh((center - t) / width * 3))  # Doppler drop
        car = dsp.bandpass(dsp.white(rng, n), 300, 2500) * 0.5 + dsp.lowpass(dsp.tone(f, n, (1, 0.5, 0.3, 0.2)), 600)
        x += car * env * rng.uniform(1.0, 2.0)
    if rng.random() < 0.35:  # horn
        d = seconds(rng.uniform(0.25, 0.5))
        f = rng.uniform(380, 460)
        horn = dsp.ramp(
            dsp.lowpass(dsp.tone(f, d, (1, 0.5, 0.3)) + dsp.tone(f * 1.26, d, (1, 0.5, 0.3)), 3000), 0.02, 0.03
        )
        dsp.place(x, horn * 2.0, seconds(rng.uniform(0.2, 3.4)))
    return x


def _crowd(rng, n, babble):
    x = np.zeros(n)
    for voice in babble:  # each talker enters at a random point; gains within +-5 dB
        start = int(rng.integers(-len(voice) // 2, n - len(voice) // 4))
        dsp.place(x, voice / (dsp.rms(voice) + 1e-9) * dsp.db(rng.uniform(-5, 5)), start)
    x = dsp.reverb(x, rng, rng.uniform(0.7, 1.0), 0.5)
    return x + 0.1 * dsp.lowpass(dsp.colored(rng, n, 1.0), 800)


def _park(rng, n, babble):
    x = dsp.lowpass(dsp.white(rng, n), rng.uniform(400, 700)) * dsp.smooth_envelope(
        rng, n, rng.uniform(0.5, 1.2), 0.2, 1.0
    )
    x /= dsp.rms(x) + 1e-9
    for _ in range(int(rng.integers(2, 6))):  # bird trills
        at = seconds(rng.uniform(0.0, 3.5))
        f0 = rng.uniform(2500, 4500)
        for _ in range(int(rng.integers(3, 8))):
            d = seconds(rng.uniform(0.04, 0.09))
            f = np.linspace(f0, f0 * rng.uniform(1.15, 1.4), d) if rng.random() < 0.5 else np.linspace(f0 * 1.3, f0, d)
            dsp.place(x, dsp.ramp(dsp.tone(f, d), 0.01, 0.02) * rng.uniform(1.0, 3.0), at)
            at += d + seconds(rng.uniform(0.03, 0.08))
    return x


def _elevator(rng, n, babble):
    f = rng.choice([50.0, 60.0]) * 2
    x = dsp.tone(f, n, (1, 0.6, 0.4, 0.3, 0.2))
    x += 0.4 * dsp.tone(np.linspace(rng.uniform(380, 450), rng.uniform(460, 560), n), n)  # motor whine
    x += 0.3 * dsp.bandpass(dsp.white(rng, n), 200, 1000)  # ventilation
    if rng.random() < 0.7:  # arrival chime: two falling bell tones
        at = seconds(rng.uniform(0.3, 2.5))
        for k, pitch in enumerate((rng.uniform(640, 700), rng.uniform(520, 560))):
            dsp.place(
                x,
                3.0 * dsp.damped((pitch, 2 * pitch, 3 * pitch), (1, 0.3, 0.1), 0.35, seconds(1.0)),
                at + k * seconds(0.45),
            )
    return dsp.reverb(x, rng, 0.25, 0.3)


def _kitchen(rng, n, babble):
    x = 0.15 * dsp.tone(rng.choice([50.0, 60.0]), n, (1, 0.5, 0.2))  # fridge
    if rng.random() < 0.5:  # running water: band noise with fast flutter
        water = dsp.bandpass(dsp.white(rng, n), 1000, 6000) * dsp.smooth_envelope(rng, n, 25, 0.3, 1.0)
    else:  # sizzling: sparse crackles
        crackle = (rng.random(n) < 0.004) * rng.standard_normal(n) * 4
        water = dsp.highpass(crackle + 0.3 * dsp.white(rng, n), 2500)
    x += water * dsp.smooth_envelope(rng, n, 0.5, 0.4, 1.0)
    for _ in range(int(rng.integers(4, 11))):  # clinks of cutlery and dishes
        f = rng.uniform(2000, 5500)
        clink = dsp.damped((f, 1.47 * f, 2.09 * f), (1, 0.5, 0.3), rng.uniform(0.02, 0.07), seconds(0.3))
        dsp.place(x, clink * rng.uniform(2.0, 5.0), seconds(rng.uniform(0, 3.8)))
    return dsp.reverb(x, rng, 0.4, 0.25)


def _restroom(rng, n, babble):
    drops = (rng.random(n) < rng.uniform(0.08, 0.18)) * rng.standard_normal(n)  # 1300-2900 drops/s
    x = dsp.bandpass(drops, 800, 5000) * dsp.smooth_envelope(rng, n, 0.5, 0.5, 1.0)
    x /= dsp.rms(x) + 1e-9
    if rng.random() < 0.5:  # hand dryer
        a = seconds(rng.uniform(0.2, 1.5))
        d = min(seconds(rng.uniform(1.5, 2.5)), n - a)
        dryer = dsp.lowpass(dsp.white(rng, d), 3000) + 0.5 * dsp.tone(rng.uniform(90, 110), d, (1, 0.5))
        dsp.place(x, dsp.ramp(dryer, 0.15, 0.3) * 2.5, a)
    return dsp.reverb(x, rng, rng.uniform(1.0, 1.4), 0.5)


def _subway(rng, n, babble):
    x = 2.0 * dsp.lowpass(dsp.colored(rng, n, 2.0), 150)
    x += 0.5 * dsp.bandpass(dsp.white(rng, n), 300, 1500)  # wheel roar
    period = seconds(rng.uniform(0.7, 1.1))
    for at in range(int(rng.integers(0, period)), n, period):  # rail joints: clack-clack
        for k in (0, seconds(0.12)):
            dsp.place(x, 4.0 * dsp.damped((rng.uniform(60, 90), 210), (1, 0.4), 0.04, seconds(0.2)), at + k)
    if rng.random() < 0.5:  # wheel screech
        d = seconds(rng.uniform(1.0, 2.0))
        f = rng.uniform(2500, 3800) * (1 + 0.01 * np.sin(2 * np.pi * 6 * np.arange(d) / SR))
        dsp.place(x, dsp.ramp(dsp.tone(f, d), 0.2, 0.3) * 0.8, seconds(rng.uniform(0, 2.0)))
    return x


@dataclass(frozen=True)
class Scene:
    render: Callable[[np.random.Generator, int, list[np.ndarray]], np.ndarray]  # (rng, samples, babble) -> texture
    talkers: int  # speech clips the texture needs for its babble (0: none)
    description: str


SCENES: dict[str, Scene] = {
    "street": Scene(_street, 0, "traffic rumble, passing cars, occasional horn"),
    "crowdedindoor": Scene(_crowd, 7, "babble of seven eSpeak voices in en/de/fr, reverberant hall"),
    "park": Scene(_park, 0, "gusts of wind and bird trills"),
    "elevator": Scene(_elevator, 0, "mains hum, motor whine, ventilation, arrival chime"),
    "kitchen": Scene(_kitchen, 0, "clinking dishes, running water or sizzling, fridge hum"),
    "restroom": Scene(_restroom, 0, "running water like rain, hand dryer, tiled-room reverb"),
    "subway": Scene(_subway, 0, "heavy rumble, rhythmic wheel clacks, wheel screech"),
}


def render_scene(
    label: str, rng: np.random.Generator, babble: list[np.ndarray] | None = None, duration_s: float = DURATION_S
) -> np.ndarray:
    """A scene texture at an RMS level between -30 and -20 dBFS (so level is no cue to the class)."""
    if label not in SCENES:
        raise ValueError(f"no texture for scene {label!r}; available: {', '.join(SCENES)}")
    spec = SCENES[label]
    if len(babble or []) < spec.talkers:
        raise ValueError(f"scene {label!r} needs {spec.talkers} speech clips for its babble, got {len(babble or [])}")
    x = spec.render(rng, seconds(duration_s), babble or [])
    return dsp.to_level(x, rng.uniform(-30, -20))


def mix_speech(background: np.ndarray, speech: np.ndarray, snr_db: float, start: int) -> np.ndarray:
    """Lay ``speech`` on ``background`` at ``snr_db`` (speech RMS over background RMS)."""
    out = background.astype(np.float64).copy()
    gain = dsp.rms(background) * dsp.db(snr_db) / (dsp.rms(speech) + 1e-12)
    dsp.place(out, speech * gain, start)
    peak = float(np.max(np.abs(out)))
    return (out * (0.98 / peak) if peak > 0.98 else out).astype(np.float32)
