"""Offline speech synthesis with eSpeak NG, with word timings, as 16 kHz mono float32.

Reference: the eSpeak NG C API, ``speak_lib.h`` (espeak-ng 1.52), driven through ctypes on
the ``libespeak-ng.so`` and voice data shipped by the PyPI package ``espeakng-loader``:
``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ...)`` returns the output rate (22050 Hz), the
synth callback receives the samples and an event list, and ``espeakEVENT_WORD`` events carry
each word's character span in the text and its start time in the audio (ms).

A WORD event marks where a word *begins*; the word ends where the next one begins, pauses
included. :func:`synthesize` therefore trims each word's span to its voiced part by frame
energy, and trims the clip's leading and trailing silence to a short margin.

eSpeak keeps one global synthesizer whose state carries over from one utterance to the next
(static pitch-flutter and phase counters in ``wavegen.c``), and the breath noise of the
breathy variants (``+f2``, ``+f3``) comes from a generator that ``espeak_Initialize`` seeds
with the clock. For reproducible output each call loads the library afresh (``dlclose`` +
``dlopen`` resets its static data; about 3 ms, most of it reading the voice's dictionary)
and fixes the seed with ``espeak_ng_SetRandSeed`` (espeak-ng >= 1.52, what espeakng-loader
ships). Calls are serialized with a lock; for parallel generation use processes (each loads
its own copy of the library).
"""

from __future__ import annotations

import _ctypes
import ctypes
import string
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000  # Hz, what qaudio.audio.SAMPLE_RATE reads
FRAME = 160  # samples (10 ms) per energy frame for trimming
SILENCE_DB = 40.0  # a frame quieter than the clip's loudest frame by this much is silence
MARGIN_S = 0.08  # silence kept before the first and after the last voiced frame

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD = 0, 1
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "punctuation": 5, "capitals": 6, "wordgap": 7}
_RANGES = {"rate": (80, 450), "pitch": (0, 99), "volume": (0, 200), "pitch_range": (0, 99)}

INSTALL_HINT = "pip install 'qaudio[tts]' (it installs espeakng-loader, which ships libespeak-ng and its voices)"


class EspeakUnavailable(RuntimeError):
    """eSpeak NG cannot be loaded; the message says what to install."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    # espeak_EVENT in speak_lib.h
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character index of the word in the text
        ("length", ctypes.c_int),  # characters in the word
        ("audio_position", ctypes.c_int),  # ms from the start of the output
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class SpeechClip:
    """Synthesized speech: samples and the words with their voiced (start, end) in seconds."""

    samples: np.ndarray  # (num_samples,) float32 in [-1, 1] at 16 kHz
    words: list[tuple[str, float, float]]  # (word as written in the text, start_s, end_s)

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


class _Engine:
    """One load of the library, its output rate and the buffers the callback fills.

    Used for one utterance and then closed, so every utterance starts from the library's
    initial state.
    """

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise EspeakUnavailable(f"speech synthesis needs eSpeak NG: {INSTALL_HINT}") from None
        try:
            self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as e:
            raise EspeakUnavailable(
                f"cannot load eSpeak NG from espeakng-loader ({e}); reinstall it: {INSTALL_HINT}"
            ) from None
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if self.rate <= 0:
            raise EspeakUnavailable(f"espeak_Initialize failed (returned {self.rate}) with data at {data_path}")
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, int, int]] = []  # (text_position, length, audio_position ms)
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: the library holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def close(self) -> None:
        self.lib.espeak_Terminate()
        # Unload so the next load starts with fresh static data. (If another module of this
        # process loaded the same file too, it stays mapped and its state carries over.)
        _ctypes.dlclose(self.lib._handle)

    def _on_audio(self, wav: Any, num_samples: int, events: Any) -> int:
        if num_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_WORD:
                self.events.append((e.text_position, e.length, e.audio_position))
            i += 1
        return 0  # continue synthesis

    def run(self, text: str, voice: str, params: dict[str, int]) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(
                f"unknown eSpeak NG voice {voice!r}; "
                "expected a language with an optional variant, e.g. 'en', 'en+f3', 'de+m2', 'fr'"
            )
        for name, value in params.items():
            self.lib.espeak_SetParameter(_PARAM[name], value, 0)
        self.chunks, self.events = [], []
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(1))
        data = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with error {err} on {text!r}")
        pcm = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return pcm, self.events


_LOCK = threading.Lock()


def available() -> bool:
    """Whether eSpeak NG can be loaded (espeakng-loader installed and its library loads)."""
    try:
        with _LOCK:
            _Engine().close()
        return True
    except EspeakUnavailable:
        return False


def _frame_db(samples: np.ndarray) -> np.ndarray:
    """Per-10 ms frame energy in dB relative to the loudest frame: (num_frames,)."""
    n = len(samples) // FRAME
    if n == 0:
        return np.zeros(0)
    rms = np.sqrt(np.mean(samples[: n * FRAME].reshape(n, FRAME).astype(np.float64) ** 2, axis=1))  # (n,)
    return 20 * np.log10(np.maximum(rms, 1e-9) / max(rms.max(), 1e-9))


def _voiced_span(voiced: np.ndarray, lo: int, hi: int) -> tuple[int, int] | None:
    """First and last+1 voiced frame within frames [lo, hi), or None."""
    idx = np.flatnonzero(voiced[lo:hi])
    return None if len(idx) == 0 else (lo + int(idx[0]), lo + int(idx[-1]) + 1)


_PUNCTUATION = string.punctuation + "«»¿¡“”‘’„…–—"  # stripped from a written word's ends


def _word_spans(text: str, events: list[tuple[int, int, int]]) -> list[tuple[str, int]]:
    """(word, start ms) for each whitespace-separated word of ``text``.

    eSpeak sometimes gives one event for two words (French elision ``l'homme``) or several
    for one (numbers): each written word takes the start of the first event that overlaps
    it, and a word no event reaches shares the previous word's start (it is split later).
    """
    words, starts = [], []
    pos = 0
    for token in text.split():
        begin = text.index(token, pos)
        pos = begin + len(token)
        word = token.strip(_PUNCTUATION)
        if not word:  # a lone dash or quote is not a word
            continue
        # events are 1-based; the word occupies characters [begin, pos) 0-based
        hit = [a for (tp, ln, a) in events if tp - 1 < pos and tp - 1 + max(ln, 1) > begin]
        words.append(word)
        starts.append(min(hit) if hit else None)
    known = [s for s in starts if s is not None]
    if not known:
        return []
    prev = known[0]
    out = []
    for w, s in zip(words, starts, strict=True):
        prev = prev if s is None else s
        out.append((w, prev))
    return out


def _align_words(text: str, events: list[tuple[int, int, int]], samples: np.ndarray) -> list[tuple[str, float, float]]:
    """Word (start, end) in seconds, each trimmed to its voiced frames."""
    spans = _word_spans(text, events)
    if not spans:
        return []
    db = _frame_db(samples)
    voiced = db > -SILENCE_DB
    n_frames = len(db)
    # Group words that share a start (merged events): they split their span by characters.
    groups: list[list[str]] = []
    group_starts: list[int] = []
    for w, s in spans:
        if group_starts and s == group_starts[-1]:
            groups[-1].append(w)
        else:
            groups.append([w])
            group_starts.append(s)
    out = []
    for g, (words, start_ms) in enumerate(zip(groups, group_starts, strict=True)):
        lo = min(start_ms // 10, n_frames)
        hi = n_frames if g + 1 == len(groups) else min(group_starts[g + 1] // 10, n_frames)
        span = _voiced_span(voiced, lo, max(hi, lo))
        if span is None:  # nothing voiced (e.g. a word eSpeak skipped): a zero-length mark
            span = (lo, lo)
        first, last = span
        total = sum(len(w) for w in words)
        at = float(first)
        for w in words:
            step = (last - first) * len(w) / total
            out.append((w, round(at * FRAME / SAMPLE_RATE, 3), round((at + step) * FRAME / SAMPLE_RATE, 3)))
            at += step
    return out


def word_problems(samples: np.ndarray, words: list[tuple[str, float, float]]) -> list[str]:
    """What is wrong with word timings against the waveform (empty when they are sane).

    Sane: each word lies within the clip, starts no earlier than the previous one ends, has
    a positive length, and its span holds voiced (non-silent) frames.
    """
    problems = []
    voiced = _frame_db(samples) > -SILENCE_DB
    duration = len(samples) / SAMPLE_RATE
    previous_end = 0.0
    for i, (w, s, e) in enumerate(words):
        if not 0 <= s < e <= duration + 1e-6:
            problems.append(f"word {i} {w!r} at [{s}, {e}] is empty or outside the clip of {duration:.3f} s")
        elif s < previous_end - 1e-6:
            problems.append(f"word {i} {w!r} starts at {s} before the previous word ends at {previous_end}")
        elif not voiced[
            int(s * SAMPLE_RATE) // FRAME : max(int(e * SAMPLE_RATE) // FRAME, int(s * SAMPLE_RATE) // FRAME + 1)
        ].any():
            problems.append(f"word {i} {w!r} at [{s}, {e}] spans only silence")
        previous_end = max(previous_end, e)
    return problems


def _check_range(name: str, value: int) -> int:
    lo, hi = _RANGES[name]
    if not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def synthesize(
    text: str,
    voice: str = "en",
    rate: int = 175,
    pitch: int = 50,
    volume: int = 100,
    pitch_range: int = 50,
) -> SpeechClip:
    """Speak ``text`` with an eSpeak NG voice; returns 16 kHz float32 samples and word timings.

    ``voice`` is a language (``en``, ``en-us``, ``de``, ``fr`` ...) with an optional variant
    (``en+f3``, ``de+m2``); ``rate`` is words per minute (80-450), ``pitch`` and
    ``pitch_range`` are 0-99 (50 is the voice's normal), ``volume`` is 0-200 (100 normal).
    The same arguments always give the same samples.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("synthesize needs a non-empty text")
    params = {
        "rate": _check_range("rate", rate),
        "pitch": _check_range("pitch", pitch),
        "volume": _check_range("volume", volume),
        "range": _check_range("pitch_range", pitch_range),
        "punctuation": 0,
        "capitals": 0,
        "wordgap": 0,
    }
    with _LOCK:
        engine = _Engine()
        try:
            pcm, events = engine.run(text, voice, params)
        finally:
            engine.close()
        native_rate = engine.rate
    if len(pcm) == 0:
        raise RuntimeError(f"eSpeak NG produced no audio for {text!r} with voice {voice!r}")
    samples = _resample(pcm.astype(np.float32) / 32768.0, native_rate)
    # events' audio_position is ms in the output stream, which is rate independent
    words = _align_words(text, events, samples)
    return trim(SpeechClip(samples, words))


def _resample(samples: np.ndarray, orig_sr: int) -> np.ndarray:
    if orig_sr == SAMPLE_RATE:
        return samples
    import soxr

    return soxr.resample(samples, orig_sr, SAMPLE_RATE, quality="HQ").astype(np.float32)


def trim(clip: SpeechClip) -> SpeechClip:
    """Cut leading and trailing silence down to MARGIN_S, shifting the word times."""
    voiced = np.flatnonzero(_frame_db(clip.samples) > -SILENCE_DB)
    if len(voiced) == 0:
        return clip
    margin = int(MARGIN_S * SAMPLE_RATE)
    begin = max(int(voiced[0]) * FRAME - margin, 0)
    end = min((int(voiced[-1]) + 1) * FRAME + margin, len(clip.samples))
    shift = begin / SAMPLE_RATE
    dur = (end - begin) / SAMPLE_RATE
    words = [
        (w, round(min(max(s - shift, 0.0), dur), 3), round(min(max(e - shift, 0.0), dur), 3)) for w, s, e in clip.words
    ]
    return SpeechClip(np.ascontiguousarray(clip.samples[begin:end]), words)
