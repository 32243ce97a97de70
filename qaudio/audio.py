"""Audio input: any file, bytes or array -> 16 kHz mono float32, in one place.

Every reader in qaudio (recipes, training, inference, the server) goes through
:func:`load_audio`, so resampling, down-mixing and the checks on bad input happen once.
Formats: whatever libsndfile reads (wav, flac, ogg/vorbis, opus, mp3 with libsndfile >= 1.1),
with librosa's audioread fallback for the rest.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Union

import numpy as np

SAMPLE_RATE = 16_000  # Hz; what the Whisper feature extractor expects
MIN_SAMPLES = 160  # one 10 ms hop: shorter audio gives no encoder frame
SILENCE_RMS = 1e-5  # below this RMS (about -100 dBFS) a clip carries no signal


class AudioError(ValueError):
    """Audio that cannot be used; the message names the input and the problem."""


@dataclass
class Audio:
    """A decoded clip: 16 kHz mono float32 samples and where they came from."""

    samples: np.ndarray  # (num_samples,) float32 in [-1, 1]
    source: str  # a path, or a short description such as "<bytes>" or "<array>"

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


# What load_audio takes: a file path, encoded file bytes, a loaded Audio, or samples (with their rate).
AudioSource = Union[str, os.PathLike, bytes, bytearray, "Audio", np.ndarray]


def _describe(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return "<array>"


def _decode(source: str | os.PathLike | bytes | bytearray) -> tuple[np.ndarray, int]:
    """Read a path or bytes into (samples (T,) or (T, C), sample rate)."""
    import soundfile as sf

    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise AudioError(f"{source}: file not found")
    stream = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else source
    try:
        data, sr = sf.read(stream, dtype="float32", always_2d=False)
        return data, sr
    except Exception as sf_error:  # libsndfile cannot read it: try librosa's other backends
        if isinstance(stream, io.BytesIO):
            stream.seek(0)
        try:
            import warnings

            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data, sr = librosa.load(stream, sr=None, mono=False)
            return (data.T if data.ndim == 2 else data), int(sr)
        except Exception:
            # libsndfile's message names its stream object ("<_io.BytesIO object at 0x...>")
            # and says "does not exist" for files it cannot parse: keep only what it found.
            detail = str(sf_error).split(": ")[-1] if ": " in str(sf_error) else str(sf_error)
            if "does not exist" in detail:  # the file exists (checked above): libsndfile rejected it
                detail = "unrecognised or corrupt data"
            raise AudioError(
                f"{_describe(source)}: cannot decode audio ({detail}); expected a wav, flac, ogg or mp3 file"
            ) from None


def to_mono_16k(samples: np.ndarray, sample_rate: int, source: str = "<array>") -> np.ndarray:
    """Down-mix (mean over channels) and resample to 16 kHz; checks shape and values."""
    samples = np.asarray(samples)
    if samples.dtype.kind not in "fiu":
        raise AudioError(f"{source}: audio array has dtype {samples.dtype}; expected numbers")
    if samples.dtype.kind in "iu":  # integer PCM -> [-1, 1]
        samples = samples.astype(np.float32) / np.iinfo(samples.dtype).max
    samples = samples.astype(np.float32, copy=False)
    if samples.ndim == 2:
        # Channels are the short axis: (T, C) from soundfile, but users also pass (C, T).
        samples = samples.mean(axis=1 if samples.shape[1] <= samples.shape[0] else 0)
    elif samples.ndim != 1:
        raise AudioError(f"{source}: audio array has shape {samples.shape}; expected (samples,) or (samples, channels)")
    if not np.isfinite(samples).all():
        raise AudioError(f"{source}: audio contains NaN or infinite values")
    if not sample_rate or sample_rate <= 0:
        raise AudioError(f"{source}: invalid sample rate {sample_rate!r}")
    if sample_rate != SAMPLE_RATE and len(samples):
        import librosa

        samples = librosa.resample(samples, orig_sr=sample_rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    return np.ascontiguousarray(samples, dtype=np.float32)


def load_audio(source: AudioSource, sample_rate: int | None = None, allow_silence: bool = False) -> Audio:
    """Load a path, bytes, or an array (with ``sample_rate``) as 16 kHz mono float32.

    Raises :class:`AudioError` for a missing file, undecodable data, NaN/inf samples, a clip
    shorter than one 10 ms frame, or (unless ``allow_silence``) a silent clip.
    """
    name = _describe(source)
    if isinstance(source, Audio):
        return source
    if isinstance(source, (str, os.PathLike, bytes, bytearray)):
        if isinstance(source, (bytes, bytearray)) and not source:
            raise AudioError(f"{name}: empty input")
        data, sr = _decode(source)
    else:
        if sample_rate is None:
            raise AudioError("<array>: an audio array needs its sample_rate")
        data, sr = source, sample_rate
    samples = to_mono_16k(data, sr, name)
    if len(samples) < MIN_SAMPLES:
        raise AudioError(
            f"{name}: audio is {len(samples)} samples long; expected at least {MIN_SAMPLES} (10 ms at 16 kHz)"
        )
    if not allow_silence and float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) < SILENCE_RMS:
        raise AudioError(f"{name}: audio is silent (RMS below {SILENCE_RMS:g})")
    return Audio(samples, name)


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the file header, without decoding the samples."""
    import soundfile as sf

    try:
        return sf.info(str(path)).duration
    except Exception:
        return load_audio(path, allow_silence=True).duration
