"""The benchmarks' test clips: duration mixes, seeded speech-shaped clips and their transcripts.

Clips are synthetic, speech-shaped noise (amplitude-modulated at a syllable rate) of the mix's
durations, with transcripts of English words at a speaking rate: with random weights only the
durations and text lengths matter for speed, and they are what the mixes fix.

Reference: LibriSpeech (Panayotov et al., ICASSP 2015) for the read-speech durations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qaudio.audio import SAMPLE_RATE

# ---- Duration mixes and clips ----------------------------------------------------------------


@dataclass(frozen=True)
class Mix:
    """A duration mix: clip lengths uniform in [min_s, max_s], transcripts at words_per_s."""

    name: str
    min_s: float
    max_s: float
    words_per_s: float
    description: str


MIXES: dict[str, Mix] = {
    # LibriSpeech train utterances are 1-35 s, mostly 10-17 s (mean 12.7 s in train-clean-100);
    # read speech runs at about 2.7 words per second.
    "librispeech": Mix("librispeech", 2.0, 20.0, 2.7, "LibriSpeech-like read speech, 2-20 s"),
    # Voice commands and short queries: a few words, 1-5 s.
    "short": Mix("short", 1.0, 5.0, 2.0, "short commands, 1-5 s"),
}


@dataclass
class Clip:
    samples: np.ndarray  # (T,) float32, 16 kHz mono
    text: str  # the transcript (the training target)

    @property
    def duration(self) -> float:
        """Seconds of audio (the name training items give it, so the feature cache takes clips)."""
        return len(self.samples) / SAMPLE_RATE

    @property
    def key(self) -> str:
        """A content hash, as the feature cache keys real clips by their bytes."""
        return hashlib.sha256(self.samples.tobytes()).hexdigest()


def vocabulary() -> list[str]:
    """English words of the synthetic corpus's lexicon, plus function words."""
    from qaudio.synth.lexicon import ADJECTIVES, NOUNS, PLACES, VERBS_PAST, VERBS_PRESENT

    words = {w for nouns in NOUNS.values() for n in nouns for w in (n.en, n.en_pl)}
    words |= {a.en for a in ADJECTIVES} | {v.en for v in (*VERBS_PRESENT, *VERBS_PAST)}
    words |= {w for p in PLACES for w in p.en.split()}
    words |= set("the a an and of to in on with for at from by it is was he she they we you that this".split())
    return sorted(words)


def make_clips(mix: Mix, count: int, seed: int) -> list[Clip]:
    """``count`` clips of the mix, fixed by ``seed`` (the same in every process)."""
    rng = np.random.default_rng(seed)
    words_of = vocabulary()
    clips = []
    for _ in range(count):
        seconds = float(rng.uniform(mix.min_s, mix.max_s))
        n = int(round(seconds * SAMPLE_RATE))
        t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi))  # ~4 syllables/s
        samples = (0.1 * envelope * rng.standard_normal(n)).astype(np.float32)  # (T,)
        words = max(1, int(round(seconds * mix.words_per_s)))
        text = " ".join(rng.choice(words_of, size=words))
        clips.append(Clip(samples, text))
    return clips


def batches_of(clips: Sequence[Clip], batch_size: int) -> list[list[Clip]]:
    return [list(clips[i : i + batch_size]) for i in range(0, len(clips), batch_size)]
