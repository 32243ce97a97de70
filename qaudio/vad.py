"""Is there speech in a clip? Silence by energy; speech by Silero VAD; one number for both.

A silent or speech-free clip is answered with empty text and a ``no_speech`` flag, the way
OpenAI's transcription API answers it, instead of an error or a hallucinated loop.
:func:`no_speech_prob` is that verdict's number, reported as ``no_speech_prob``:

- a clip below :data:`qaudio.audio.SILENCE_RMS` (digital silence) has probability 1;
- otherwise Silero VAD (Silero Team, https://github.com/snakers4/silero-vad, the PyPI package
  ``silero-vad``, which ships its model) gives a speech probability for every 32 ms chunk;
  speech must last: the probability of speech is the highest mean over
  :data:`SPAN_CHUNKS` consecutive chunks (256 ms, the package's own default minimum speech
  duration is 250 ms), and ``no_speech_prob`` is one minus that;
- a clip has no speech when ``no_speech_prob`` exceeds :data:`NO_SPEECH_THRESHOLD` (0.5, the
  package's default speech threshold, so the two agree).

Without the package (``pip install 'qaudio[vad]'``) only digital silence is detected:
:func:`available` says so and ``qaudio doctor`` reports it.
"""

from __future__ import annotations

import functools

import numpy as np

from .audio import SAMPLE_RATE
from .chunking import is_silent

CHUNK = 512  # samples per Silero chunk at 16 kHz (32 ms): the model's fixed input size
SPAN_CHUNKS = 8  # speech shorter than 8 chunks (256 ms) is a click or a breath, not speech
NO_SPEECH_THRESHOLD = 0.5  # no_speech_prob above this: the clip holds no speech
INSTALL_HINT = "pip install 'qaudio[vad]' (the silero-vad package, 11 MB, ships its model)"


def available() -> bool:
    """Whether Silero VAD can run (the ``silero-vad`` package is installed)."""
    try:
        import silero_vad  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _model():
    from silero_vad import load_silero_vad

    return load_silero_vad()  # TorchScript model from the package's data: no download


def speech_probs(clips: list[np.ndarray]) -> list[np.ndarray]:
    """Silero's speech probability of every 32 ms chunk of each 16 kHz clip: (ceil(T / 512),) each.

    Clips run as one zero-padded batch (padding chunks are dropped from the answers).
    """
    import torch

    if not clips:
        return []
    longest = max(len(c) for c in clips)
    batch = np.zeros((len(clips), -(-longest // CHUNK) * CHUNK), dtype=np.float32)  # (B, T)
    for i, c in enumerate(clips):
        batch[i, : len(c)] = c
    with torch.inference_mode():
        probs = _model().audio_forward(torch.from_numpy(batch), SAMPLE_RATE).float().numpy()  # (B, chunks)
    return [probs[i, : -(-len(c) // CHUNK)] for i, c in enumerate(clips)]


def _from_chunks(probs: np.ndarray) -> float:
    span = min(SPAN_CHUNKS, len(probs))
    sustained = np.convolve(probs, np.ones(span) / span, mode="valid")  # mean over each 256 ms span
    return round(float(1.0 - sustained.max()), 4)


def no_speech_probs(clips: list[np.ndarray], use_vad: bool = True) -> list[float | None]:
    """``no_speech_prob`` of each clip: 1 for silence, else from Silero VAD (None when it
    cannot run, i.e. ``use_vad`` is off or the package is missing, and the clip is not silent)."""
    out: list[float | None] = [1.0 if is_silent(c) else None for c in clips]
    todo = [i for i, p in enumerate(out) if p is None]
    if todo and use_vad and available():
        for i, probs in zip(todo, speech_probs([clips[i] for i in todo])):
            out[i] = _from_chunks(probs)
    return out


def is_no_speech(prob: float | None) -> bool:
    return prob is not None and prob > NO_SPEECH_THRESHOLD
