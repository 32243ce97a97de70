"""Domain-matched synthesis: speak the domain's text with voices fitted to the unlabeled audio.

The shipped synthesizer, ``matched-voices``, uses qaudio's offline voices (eSpeak NG, and
Piper's English voice when installed) through ``qaudio tts-augment``
(:func:`qaudio.synth.augment.augment`), with its settings chosen from the measured
:class:`~qaudio.selftrain.domain_stats.DomainStats`:

- each voice is calibrated once per run: a domain sentence is spoken at eSpeak pitch 20 and
  80 and its F0 measured with the same pyin settings as the domain, and its words per second
  at the nominal rate; pitch and rate are then interpolated to land on the domain's median
  F0 and words per second (Piper's pitch is fixed: it is used only when its F0 falls inside
  the domain's 10-90% range);
- the voices kept are the ``max_voices`` that reach the domain's F0 with the least change
  from their normal pitch; the sentences are dealt out among them;
- background: none when the domain is clean (median SNR at least :data:`CLEAN_SNR_DB`),
  else coloured noise of the nearest colour (white, pink, brown) to the measured floor, at
  SNRs drawn from the domain's 10-90% range.

A trainable TTS fitted to the speakers (the full Twister recipe) plugs in as another entry
of :data:`SYNTHESIZERS`, or as a callable passed to :func:`qaudio.selftrain.self_train`:
``fn(sentences, stats, out_dir, options) -> manifest path``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import read_manifest, write_manifest
from ..synth import espeak, piper
from ..synth.augment import COLORED_NOISE, MAX_SECONDS, Settings, augment
from ..synth.voices import VOICES
from .domain_stats import DomainStats, f0_frames

CLEAN_SNR_DB = 40.0  # above this median SNR the domain gets no added background
NOMINAL_RATE = 175  # eSpeak words per minute at which a voice's speed is measured (Piper's length scale 1)
PITCH_POINTS = (20, 80)  # eSpeak pitch settings at which a voice's F0 is measured
PITCH_SPREAD = 8  # eSpeak pitch units drawn around the matched value
RATE_SPREAD = 0.1  # relative speaking-rate spread around the matched value
MAX_WORDS = int(MAX_SECONDS * 1.5)  # words a line may hold: 30 s even at a slow 1.5 words per second


@dataclass(frozen=True)
class SynthOptions:
    lang: str = "en"  # language of the sentences
    voices: tuple[str, ...] | None = None  # candidate eSpeak voices (None: every qaudio voice of the language)
    max_voices: int = 3  # voices kept, the best-matching first
    piper: bool = True  # also consider Piper's English voice when it is installed
    copies: int = 1  # versions of each sentence
    seed: int = 0
    workers: int = 1  # synthesis processes


Synthesizer = Callable[[list[str], DomainStats, Path, SynthOptions], Path]


def calibration_sentence(sentences: list[str]) -> str:
    """A domain sentence of a few words: the voices are measured speaking the domain's language."""
    for s in sentences:
        if 5 <= len(s.split()) <= 20:
            return s
    return " ".join(" ".join(sentences).split()[:12])


def _speak(text: str, voice: str, pitch: int) -> espeak.SpeechClip:
    if voice == piper.VOICE:
        return espeak.trim(espeak.SpeechClip(piper.synthesize(text), []))
    return espeak.synthesize(text, voice, rate=NOMINAL_RATE, pitch=pitch)


def calibrate(voices: list[str], sentence: str, cache: Path) -> dict[str, dict]:
    """voice -> {"f0": {pitch: median Hz}, "wps": words per second at the nominal rate}; cached in ``cache``."""
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    words = len(sentence.split())
    for voice in voices:
        if voice in known and known[voice]["sentence"] == sentence:
            continue
        f0, wps = {}, None
        for pitch in PITCH_POINTS[:1] if voice == piper.VOICE else PITCH_POINTS:
            clip = _speak(sentence, voice, pitch)
            frames = f0_frames(clip.samples)
            f0[str(pitch)] = float(np.median(frames)) if len(frames) else None
            wps = words / clip.duration
        known[voice] = {"sentence": sentence, "f0": f0, "wps": wps}
        cache.write_text(json.dumps(known, indent=1) + "\n")
    return {v: known[v] for v in voices}


def pitch_for(cal: dict, target_hz: float) -> float | None:
    """The eSpeak pitch setting that gives ``target_hz`` (linear between the measured points)."""
    (p0, f0), (p1, f1) = [(int(p), hz) for p, hz in cal["f0"].items()]
    if f0 is None or f1 is None or f1 == f0:
        return None
    return p0 + (target_hz - f0) * (p1 - p0) / (f1 - f0)


def plan_voices(cal: dict[str, dict], stats: DomainStats, max_voices: int) -> list[dict]:
    """The voices to use, each with its pitch and rate ranges (eSpeak units)."""
    plans: list[dict[str, Any]] = []
    for voice, c in cal.items():
        rate = NOMINAL_RATE if stats.words_per_second is None else NOMINAL_RATE * stats.words_per_second / c["wps"]
        rate_range = [int(np.clip(round(rate * (1 + s)), 80, 450)) for s in (-RATE_SPREAD, RATE_SPREAD)]
        if voice == piper.VOICE:
            hz = next(iter(c["f0"].values()))
            fits = stats.f0_median is None or (hz is not None and stats.f0_low <= hz <= stats.f0_high)
            if fits:
                plans.append({"voice": voice, "pitch": (50, 50), "rate": tuple(rate_range), "cost": 0.0})
            continue
        pitch = 50.0 if stats.f0_median is None else pitch_for(c, stats.f0_median)
        if pitch is None:
            continue
        centre = float(np.clip(pitch, 0, 99))
        cost = abs(pitch - 50) + 10 * abs(pitch - centre)  # out of reach costs most
        lo, hi = int(np.clip(centre - PITCH_SPREAD, 0, 99)), int(np.clip(centre + PITCH_SPREAD, 0, 99))
        plans.append({"voice": voice, "pitch": (lo, hi), "rate": tuple(rate_range), "cost": round(cost, 2)})
    plans.sort(key=lambda p: p["cost"])
    return plans[:max_voices]


def background(stats: DomainStats) -> tuple[tuple[str, ...], tuple[float, float]]:
    """(noise kinds, SNR range in dB) matching the domain's floor."""
    if stats.snr_db >= CLEAN_SNR_DB:
        return ("none",), (stats.snr_low, stats.snr_high)
    colour = min(COLORED_NOISE, key=lambda name: abs(COLORED_NOISE[name] - stats.noise_exponent))
    lo, hi = sorted((stats.snr_low, stats.snr_high))
    if hi - lo < 2:
        lo, hi = lo - 1, hi + 1
    return (colour,), (lo, hi)


def matched_voices(sentences: list[str], stats: DomainStats, out_dir: Path, options: SynthOptions) -> Path:
    """Speak ``sentences`` with matched voices into ``out_dir``; returns ``out_dir/train.jsonl``."""
    if not espeak.available():
        raise ValueError(f"domain-matched synthesis needs eSpeak NG: {espeak.INSTALL_HINT}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if options.voices:
        candidates = list(options.voices)
    elif options.lang in VOICES:
        candidates = [*VOICES[options.lang]["train"], *VOICES[options.lang]["heldout"]]
    else:
        candidates = [options.lang]
    if options.piper and options.lang == "en" and piper.available():
        candidates.append(piper.VOICE)
    cal = calibrate(candidates, calibration_sentence(sentences), out_dir / "calibration.json")
    plans = plan_voices(cal, stats, options.max_voices)
    if not plans:
        raise ValueError(f"no voice of {', '.join(candidates)} could be calibrated to the domain's pitch")
    noises, snr = background(stats)
    # tts-augment refuses a line that speaks past the encoder window: leave such lines out here.
    sentences = [s for s in sentences if len(s.split()) <= MAX_WORDS]
    examples = []
    for k, p in enumerate(plans):
        mine = sentences[k :: len(plans)]
        if not mine:
            continue
        folder = out_dir / f"voice{k}"
        (folder / "text.txt").parent.mkdir(parents=True, exist_ok=True)
        (folder / "text.txt").write_text("\n".join(mine) + "\n", encoding="utf-8")
        settings = Settings(
            options.lang, (p["voice"],), p["rate"], p["pitch"], noises, snr, "spoken", False, options.seed + k
        )
        manifest = augment(
            folder / "text.txt",
            folder,
            settings,
            copies=options.copies,
            workers=options.workers,
            progress=False,
            force=True,
        )
        examples += list(read_manifest(manifest))
    (out_dir / "plan.json").write_text(
        json.dumps(
            {"stats": stats.to_dict(), "voices": plans, "noise": noises, "snr_db": snr, "options": asdict(options)},
            indent=1,
        )
        + "\n"
    )
    path = out_dir / "train.jsonl"
    write_manifest(examples, path)
    return path


SYNTHESIZERS: dict[str, Synthesizer | None] = {"matched-voices": matched_voices, "none": None}


def get_synthesizer(name_or_fn: str | Synthesizer) -> Synthesizer | None:
    """A synthesizer by name (None for "none": rounds without synthetic speech), or the callable given."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in SYNTHESIZERS:
        raise ValueError(f"unknown synthesizer {name_or_fn!r}; valid choices: {', '.join(SYNTHESIZERS)}")
    return SYNTHESIZERS[name_or_fn]
