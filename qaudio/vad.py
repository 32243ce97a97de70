"""Voice-activity detection: Silero VAD (the ``silero-vad`` package ships its model; no download).

One module for every place qaudio asks "is someone speaking here?":

- :func:`speech_probabilities`: one speech probability per 32 ms frame (long-audio splitting in
  :mod:`qaudio.chunking` cuts where these say "pause");
- :func:`speech_spans`: the speech stretches of a clip (``qaudio run --vad``), the library's
  own hysteresis and padding rules (``get_speech_timestamps_from_probs``);
- :class:`StreamingVAD`: start/end events while audio arrives in chunks of any size (the
  streaming route and ``qaudio run --stream``), through the library's ``VADIterator``;
- :func:`no_speech_probs`: whether a clip holds speech at all. A silent or speech-free clip is
  answered with empty text and a ``no_speech`` flag, the way OpenAI's transcription API answers
  it, instead of an error or a hallucinated loop. Digital silence (below
  :data:`qaudio.audio.SILENCE_RMS`) has probability 1; otherwise speech must last: the speech
  probability is the highest mean over :data:`SPAN_FRAMES` consecutive frames (256 ms; the
  package's own minimum speech duration is 250 ms), and ``no_speech_prob`` is one minus it. A
  clip has no speech when that exceeds :data:`NO_SPEECH_THRESHOLD` (Silero's default 0.5).
  Without the package only digital silence is detected; ``qaudio doctor`` says so.

Silero VAD (https://github.com/snakers4/silero-vad, MIT) is a small recurrent network scoring
512-sample windows at 16 kHz. Its model is stateful, so each stream gets its own copy; the
batch functions share one behind a lock. ``import silero_vad`` sets torch to one thread for
the whole process: the previous setting is restored here so the audio model keeps its threads.
The TorchScript model runs without the graph optimizer: optimizing costs about 6 s on the
first call (2 CPU cores), more than the optimized runs ever save on 32 ms frames.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE

FRAME = 512  # samples per VAD decision at 16 kHz (32 ms): Silero's fixed window
SPAN_FRAMES = 8  # speech shorter than 8 frames (256 ms) is a click or a breath, not speech
NO_SPEECH_THRESHOLD = 0.5  # no_speech_prob above this: the clip holds no speech
INSTALL_HINT = (
    "voice-activity detection needs the silero-vad package: pip install 'qaudio[vad]' (or pip install silero-vad)"
)


@dataclass(frozen=True)
class VADConfig:
    threshold: float = 0.5  # speech probability at or above which a frame is speech (Silero's default)
    min_silence_ms: int = 300  # a pause must last this long to end an utterance (shorter ones are inside speech)
    min_speech_ms: int = 250  # shorter bursts are not utterances (offline spans only)
    pad_ms: int = 32  # each utterance is widened by this much on both sides (a whole number of ms)

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError(f"VAD threshold must be in (0, 1), got {self.threshold}")
        for name in ("min_silence_ms", "min_speech_ms", "pad_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"VAD {name} must be non-negative, got {getattr(self, name)}")


def available() -> bool:
    """True when silero-vad is installed (found, not imported: importing it changes torch's threads)."""
    import importlib.util

    return importlib.util.find_spec("silero_vad") is not None


def load_model():
    """A fresh Silero VAD model (TorchScript, from the package's own files; about 0.2 s)."""
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    finally:
        torch.set_num_threads(threads)  # the import set it to 1 process-wide
    return load_silero_vad()


_shared = None
_shared_lock = threading.Lock()


def _with_shared_model(fn):
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = load_model()
        _shared.reset_states()
        return fn(_shared)


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """Speech probability of each 512-sample frame of a 16 kHz clip, the last one zero-padded: (ceil(T / 512),)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    n = -(-len(x) // FRAME)
    x = torch.nn.functional.pad(x, (0, n * FRAME - len(x)))

    def run(model: torch.nn.Module) -> np.ndarray:
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            return np.array(
                [model(x[k * FRAME : (k + 1) * FRAME], SAMPLE_RATE).item() for k in range(n)], dtype=np.float32
            )

    return _with_shared_model(run)


def speech_spans(samples: np.ndarray, config: VADConfig = VADConfig()) -> list[tuple[int, int]]:
    """The speech stretches of a 16 kHz clip as ``(start, end)`` sample pairs, in order."""
    probs = speech_probabilities(samples)  # imports silero_vad first, keeping torch's thread count
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    spans = get_speech_timestamps_from_probs(
        probs.tolist(),
        sampling_rate=SAMPLE_RATE,
        threshold=config.threshold,
        min_speech_duration_ms=config.min_speech_ms,
        min_silence_duration_ms=config.min_silence_ms,
        speech_pad_ms=config.pad_ms,
        audio_length_samples=len(samples),
    )
    return [(int(s["start"]), int(s["end"])) for s in spans]


class StreamingVAD:
    """Feed 16 kHz audio in chunks of any size; get ``("start" | "end", sample)`` events.

    Sample positions count from the first sample fed. A start is reported in the frame where
    speech is first detected (``pad_ms`` earlier); an end once ``min_silence_ms`` of non-speech
    followed it, so endpointing costs that much latency by design.
    """

    def __init__(self, config: VADConfig = VADConfig()):
        model = load_model()  # first: it imports silero_vad with torch's thread count kept
        from silero_vad import VADIterator

        self.config = config
        self.iterator = VADIterator(
            model,
            threshold=config.threshold,
            sampling_rate=SAMPLE_RATE,
            min_silence_duration_ms=config.min_silence_ms,
            speech_pad_ms=config.pad_ms,
        )
        self.pending = np.zeros(0, dtype=np.float32)  # samples not yet scored (less than one frame)

    @property
    def in_speech(self) -> bool:
        """Inside an utterance (a start was reported and its end not yet)."""
        return bool(self.iterator.triggered)

    @property
    def position(self) -> int:
        """Samples scored so far."""
        return self.iterator.current_sample

    def feed(self, samples: np.ndarray) -> list[tuple[str, int]]:
        import torch

        self.pending = np.concatenate([self.pending, np.asarray(samples, dtype=np.float32)])
        events = []
        n = len(self.pending) // FRAME
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            for k in range(n):
                out = self.iterator(torch.from_numpy(self.pending[k * FRAME : (k + 1) * FRAME]))
                if out:
                    kind = "start" if "start" in out else "end"
                    events.append((kind, int(out[kind])))
        self.pending = self.pending[n * FRAME :]
        return events

    def reset(self) -> None:
        """Forget the speech state (after a forced end), keeping the sample count."""
        position = self.iterator.current_sample
        self.iterator.reset_states()
        self.iterator.current_sample = position


def _no_speech_prob(probs: np.ndarray) -> float:
    span = min(SPAN_FRAMES, len(probs))
    sustained = np.convolve(probs, np.ones(span) / span, mode="valid")  # mean over each 256 ms span
    return round(float(1.0 - sustained.max()), 4)


def no_speech_probs(clips: list[np.ndarray], use_vad: bool = True) -> list[float | None]:
    """``no_speech_prob`` of each clip: 1 for silence, else from Silero VAD (None when it
    cannot run, i.e. ``use_vad`` is off or the package is missing, and the clip is not silent)."""
    from .chunking import is_silent

    out: list[float | None] = [1.0 if is_silent(c) else None for c in clips]
    if use_vad and available():
        out = [
            p if p is not None else _no_speech_prob(speech_probabilities(c)) for p, c in zip(out, clips, strict=True)
        ]
    return out


def is_no_speech(prob: float | None) -> bool:
    return prob is not None and prob > NO_SPEECH_THRESHOLD
