"""Long audio: split a clip into encoder-sized windows at quiet points, and stitch the answers.

Whisper's encoder sees at most 30 s (``AudioLM.max_audio_seconds``); Qwen-Audio inherits the
limit. Whisper's own long-form decoding (Radford et al., "Robust Speech Recognition via
Large-Scale Weak Supervision", arXiv:2212.04356, section 4.5) slides the window by the last
predicted timestamp, which needs a model that predicts timestamps and runs windows one after
the other. Here the cut points are chosen up front from the signal alone, as VAD-based
chunking does (WhisperX, Bain et al., arXiv:2303.00747, section 3.1 "cut & merge"): each cut
goes in the quietest 100 ms frame of the last few seconds before the window limit, so a cut
falls in a pause rather than inside a word, and every window can be decoded in one batch.
When Silero VAD is installed (:mod:`qaudio.vad`), frames the detector scores as speech are
not candidates: the cut goes in the quietest frame of a detected pause, and energy decides
alone only where the search stretch holds no pause at all.

Stitching: window texts are joined in order (with a space, or without for languages written
without spaces), word times are shifted by the window's offset, and each window becomes one
:class:`Segment` with absolute start and end times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE, SILENCE_RMS

FRAME_SECONDS = 0.1  # energy frame: about one syllable, so a quiet frame is a pause, not a stop consonant
SEARCH_SECONDS = 5.0  # look for a quiet frame this far back from each window's limit
NO_SPACE_LANGUAGES = frozenset({"zh", "ja"})  # written without spaces between words


@dataclass(frozen=True)
class Window:
    """One piece of a clip: samples ``[start, end)`` at 16 kHz."""

    start: int  # first sample
    end: int  # one past the last sample

    @property
    def offset(self) -> float:
        """Start time in seconds: what this window's word times are shifted by."""
        return self.start / SAMPLE_RATE

    @property
    def duration(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


@dataclass
class Segment:
    """A stretch of the answer with absolute times (one per window; subtitle cues are built from these)."""

    start: float  # seconds
    end: float  # seconds
    text: str


def frame_rms(samples: np.ndarray, frame: int) -> np.ndarray:
    """RMS of each ``frame``-sample frame, the last (partial) frame included: (ceil(T / frame),)."""
    n_frames = -(-len(samples) // frame)
    padded = np.zeros(n_frames * frame, dtype=np.float64)
    padded[: len(samples)] = samples
    frames = padded.reshape(n_frames, frame)  # (F, frame)
    # The partial last frame is averaged over its real samples only, so a short tail is not "quiet".
    counts = np.full(n_frames, frame, dtype=np.float64)
    counts[-1] = len(samples) - (n_frames - 1) * frame
    return np.sqrt((frames**2).sum(axis=1) / counts)  # (F,)


def split_windows(
    samples: np.ndarray,
    max_seconds: float,
    search_seconds: float = SEARCH_SECONDS,
    frame_seconds: float = FRAME_SECONDS,
    vad: bool | None = None,
) -> list[Window]:
    """Cut a 16 kHz clip into windows of at most ``max_seconds``, each cut in a quiet frame.

    Each cut is the middle of the lowest-energy ``frame_seconds`` frame that lies in the last
    ``search_seconds`` before the window's limit (the latest one on ties, so windows stay
    long). A clip no longer than ``max_seconds`` is one window. Windows are contiguous and
    cover the clip exactly. ``vad``: skip frames a voice-activity detector scores as speech
    (None: when silero-vad is installed).
    """
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    if not 0 < 2 * frame_seconds <= search_seconds < max_seconds:
        raise ValueError(
            f"need 0 < 2 * frame_seconds ({frame_seconds}) <= search_seconds ({search_seconds}) < max_seconds ({max_seconds})"
        )
    n = len(samples)
    max_len = int(max_seconds * SAMPLE_RATE)
    if n <= max_len:
        return [Window(0, n)]
    frame = round(frame_seconds * SAMPLE_RATE)
    search = int(search_seconds * SAMPLE_RATE)
    energy = frame_rms(samples, frame)  # frames aligned to the clip, computed once
    if vad is None:
        from . import vad as vad_module

        vad = vad_module.available()

    windows = []
    start = 0
    while n - start > max_len:
        limit = start + max_len  # the cut may not go past this sample
        # Candidate frames k lie wholly inside [limit - search, limit], so the cut k*frame + frame//2 does too.
        first = -(-(limit - search) // frame)
        last = limit // frame - 1
        candidates = energy[first : last + 1]
        if vad:
            speech = speech_frames(samples[first * frame : (last + 1) * frame], frame)
            if not speech.all():  # a detected pause exists: cut inside it
                candidates = np.where(speech, np.inf, candidates)
        k = last - int(np.argmin(candidates[::-1]))  # reversed: the latest frame wins a tie
        cut = k * frame + frame // 2
        windows.append(Window(start, cut))
        start = cut
    windows.append(Window(start, n))
    return windows


def speech_frames(samples: np.ndarray, frame: int) -> np.ndarray:
    """For each ``frame``-sample frame: does the voice-activity detector hear speech in any part of it? (F,)"""
    from .vad import FRAME, VADConfig, speech_probabilities

    n_frames = -(-len(samples) // frame)
    probs = speech_probabilities(samples)  # one per 512-sample VAD frame
    starts = np.arange(len(probs)) * FRAME
    speech = np.zeros(n_frames, dtype=bool)
    for k in range(n_frames):
        overlapping = (starts < (k + 1) * frame) & (starts + FRAME > k * frame)
        speech[k] = bool((probs[overlapping] >= VADConfig().threshold).any())
    return speech


def is_silent(samples: np.ndarray) -> bool:
    """True when a window carries no signal (the same threshold ``load_audio`` uses for a whole clip)."""
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) < SILENCE_RMS


def join_texts(texts: list[str], language: str | None) -> str:
    """Window texts joined in order; no separator for languages written without spaces."""
    sep = "" if language in NO_SPACE_LANGUAGES else " "
    return sep.join(t.strip() for t in texts if t.strip())


def shift_words(words: list[tuple[str, float, float]], offset: float) -> list[tuple[str, float, float]]:
    """Window-relative word times -> clip times (rounded to the 10 ms time-token grid)."""
    return [(w, round(s + offset, 3), round(e + offset, 3)) for w, s, e in words]
