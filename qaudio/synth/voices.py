"""Who speaks and how: eSpeak NG voices per language and split, and prosody per emotion.

Voices: train and held-out voice variants per language; dev and test speak only with
held-out voices, so a model is scored on voices it never heard. The English sets and the
ASR prosody ranges (rate 150-190 words/min, pitch 35-65) are the measured demo recipe of
shared/OFFLINE.md, which reached 1.4% WER.

Emotions: eSpeak has no emotional voices, so each label is a prosody region (rate, pitch,
pitch range, volume) far apart from the others on at least two axes, after the acoustic
correlates reported by Scherer (2003), "Vocal communication of emotion: A review of research
paradigms", Speech Communication 40, table 2: joy raises pitch, pitch variability and rate;
sadness lowers pitch, variability, intensity and rate; hot anger raises intensity and rate
with moderately raised pitch. Neutral sits in the middle.

Joy and anger point the same way on most axes, and the axes they differ on first (pitch,
loudness) do not survive a held-out voice: voices differ more in their own pitch than the two
labels do, and eSpeak's louder settings clip (volume 120 -> 185 gains only 3-4 dB). So the two
are kept apart on what a single clip shows whatever the speaker: anger is much faster (230-255
against 175-195 words/min) and flatter (pitch range 40-55 against 85-99; a departure from the
table, where anger's variability rises too). With the earlier, overlapping rates 19-20 of a
demo model's 20-21 test errors were happy and angry confused; with these, most of the few left
are happy and neutral, whose rates meet at 175 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {"train": ("en", "en+m1", "en+m3", "en+f2", "en+f4", "en-us+m4"), "heldout": ("en+m2", "en+f3")},
    "de": {"train": ("de", "de+m1", "de+f2", "de+m3"), "heldout": ("de+m2", "de+f4")},
    "fr": {"train": ("fr", "fr+m1", "fr+f2", "fr+m3"), "heldout": ("fr+m2", "fr+f4")},
}


def voices_for(lang: str, split: str) -> tuple[str, ...]:
    """The voices of ``lang`` a split speaks with: train voices for train, held-out ones otherwise."""
    if lang not in VOICES:
        raise ValueError(f"no voices for language {lang!r}; available: {', '.join(VOICES)}")
    return VOICES[lang]["train" if split == "train" else "heldout"]


@dataclass(frozen=True)
class Prosody:
    """eSpeak NG parameters: ranges (low, high) drawn uniformly per utterance."""

    rate: tuple[int, int]  # words per minute
    pitch: tuple[int, int]  # 0-99, 50 is the voice's normal
    pitch_range: tuple[int, int]  # 0-99, 50 is the voice's normal variation
    volume: tuple[int, int]  # 0-200, 100 is normal

    def draw(self, rng: np.random.Generator) -> dict[str, int]:
        return {name: int(rng.integers(lo, hi + 1)) for name, (lo, hi) in self.__dict__.items()}


ASR_PROSODY = Prosody(rate=(150, 190), pitch=(35, 65), pitch_range=(40, 60), volume=(100, 100))

EMOTIONS: dict[str, Prosody] = {
    "neutral": Prosody(rate=(158, 175), pitch=(45, 55), pitch_range=(40, 55), volume=(95, 105)),
    "happy": Prosody(rate=(175, 195), pitch=(72, 88), pitch_range=(85, 99), volume=(115, 130)),
    "sad": Prosody(rate=(105, 125), pitch=(10, 25), pitch_range=(0, 12), volume=(50, 65)),
    "angry": Prosody(rate=(230, 255), pitch=(45, 60), pitch_range=(40, 55), volume=(175, 195)),
}
