"""Statistics of the unlabeled audio that the synthetic speech is matched to.

- speaking rate: words per second, the pseudo-labels' word count over their clips' seconds;
- pitch: F0 of the voiced frames, probabilistic YIN (Mauch and Dixon, ICASSP 2014) through
  ``librosa.pyin``, median and 10th / 90th percentiles over a sample of clips;
- signal-to-noise ratio per clip: the noise power is the mean power of the clip's quietest
  tenth of frames (the noise floor between words), the speech power is the clip's mean power
  less that floor; SNR = 10 log10(speech / noise), as the synthesis mixes it (speech RMS over
  background RMS, :func:`qaudio.synth.scenes.mix_speech`). Digital silence between words
  gives the cap, :data:`MAX_SNR_DB`;
- the noise floor's colour: the slope of its power spectrum on log-log axes (0 white,
  1 pink, 2 brown), fitted between 100 Hz and 6 kHz.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..audio import SAMPLE_RATE, load_audio
from ..data import Example

FMIN, FMAX = 60.0, 400.0  # Hz: the range of adult speaking F0
PYIN_FRAME, PYIN_HOP = 1024, 480  # samples: 64 ms windows (one period of 60 Hz fits), 30 ms hop
PITCH_SECONDS = 8.0  # per clip: pitch statistics need seconds, not the whole recording
FRAME, HOP = 512, 256  # samples: 32 ms energy frames
FLOOR_FRACTION = 0.1  # the quietest tenth of frames is the noise floor
MAX_SNR_DB = 60.0  # a floor of digital silence: no noise to match
SLOPE_BAND = (100.0, 6000.0)  # Hz


@dataclass
class DomainStats:
    clips: int  # clips measured
    seconds: float  # their audio
    words_per_second: float | None  # None: no pseudo-label kept to count words in
    f0_median: float | None  # Hz; None: no voiced frame found
    f0_low: float | None  # 10th percentile, Hz
    f0_high: float | None  # 90th percentile, Hz
    snr_db: float  # median over clips
    snr_low: float  # 10th percentile over clips, dB
    snr_high: float  # 90th percentile over clips, dB
    noise_exponent: float  # spectral slope of the noise floor: 0 white, 1 pink, 2 brown

    def to_dict(self) -> dict:
        return asdict(self)


def frame_powers(samples: np.ndarray) -> np.ndarray:
    """Mean power of each 32-ms frame (hop 16 ms): (F,)."""
    if len(samples) < FRAME:
        samples = np.pad(samples, (0, FRAME - len(samples)))
    frames = np.lib.stride_tricks.sliding_window_view(samples.astype(np.float64), FRAME)[::HOP]  # (F, FRAME)
    return (frames**2).mean(axis=1)


def snr_db(samples: np.ndarray) -> float:
    """Speech-to-noise ratio of one clip, from its noise floor (see the module docstring)."""
    power = frame_powers(samples)
    k = max(1, int(len(power) * FLOOR_FRACTION))
    noise = float(np.sort(power)[:k].mean())
    speech = float(power.mean()) - noise
    if noise <= 0 or speech <= 0:
        return MAX_SNR_DB if speech > 0 else 0.0
    return float(min(MAX_SNR_DB, 10 * np.log10(speech / noise)))


def noise_exponent(clips: list[np.ndarray]) -> float:
    """Spectral slope of the clips' quietest frames (power ~ 1 / f**exponent)."""
    spectra = []
    window = np.hanning(FRAME)
    for samples in clips:
        power = frame_powers(samples)
        k = max(1, int(len(power) * FLOOR_FRACTION))
        for i in np.argsort(power)[:k]:
            frame = samples[i * HOP : i * HOP + FRAME]
            if len(frame) == FRAME and np.any(frame):
                spectra.append(np.abs(np.fft.rfft(frame * window)) ** 2)
    if not spectra:
        return 0.0  # digital silence: the colour does not matter, nothing will be mixed
    freqs = np.fft.rfftfreq(FRAME, 1 / SAMPLE_RATE)
    band = (freqs >= SLOPE_BAND[0]) & (freqs <= SLOPE_BAND[1])
    mean = np.mean(spectra, axis=0)[band]
    slope = np.polyfit(np.log10(freqs[band]), np.log10(mean + 1e-20), 1)[0]
    return float(-slope)


def f0_frames(samples: np.ndarray) -> np.ndarray:
    """F0 (Hz) of the voiced frames of a clip's first :data:`PITCH_SECONDS`."""
    import librosa

    samples = samples[: int(PITCH_SECONDS * SAMPLE_RATE)]
    if len(samples) < PYIN_FRAME:
        return np.empty(0)
    f0, voiced, _ = librosa.pyin(
        samples, fmin=FMIN, fmax=FMAX, sr=SAMPLE_RATE, frame_length=PYIN_FRAME, hop_length=PYIN_HOP
    )
    return f0[voiced & np.isfinite(f0)]


def words_per_second(labelled: list[Example]) -> float | None:
    seconds = sum(ex.duration for ex in labelled)
    words = sum(len(str(ex.target).split()) for ex in labelled)
    return round(words / seconds, 3) if seconds > 0 and words else None


def measure(clips: list[Example], labelled: list[Example], max_pitch_clips: int = 20, seed: int = 0) -> DomainStats:
    """Statistics of ``clips`` (the unlabeled audio); the rate from ``labelled`` (the kept pseudo-labels)."""
    if not clips:
        raise ValueError("no unlabeled clips to measure")
    rng = np.random.default_rng(seed)
    sample = set(rng.choice(len(clips), size=min(max_pitch_clips, len(clips)), replace=False).tolist())
    snrs: list[float] = []
    kept: list[np.ndarray] = []  # one clip in memory at a time, besides the pitch sample
    samples_total = 0
    for i, ex in enumerate(clips):
        samples = load_audio(ex.audio, allow_silence=True).samples
        snrs.append(snr_db(samples))
        samples_total += len(samples)
        if i in sample:
            kept.append(samples)
    f0 = np.concatenate([f0_frames(x) for x in kept] or [np.empty(0)])
    pct = (lambda q: round(float(np.percentile(f0, q)), 1)) if len(f0) else (lambda q: None)
    return DomainStats(
        clips=len(clips),
        seconds=round(samples_total / SAMPLE_RATE, 2),
        words_per_second=words_per_second(labelled),
        f0_median=pct(50),
        f0_low=pct(10),
        f0_high=pct(90),
        snr_db=round(float(np.median(snrs)), 1),
        snr_low=round(float(np.percentile(snrs, 10)), 1),
        snr_high=round(float(np.percentile(snrs, 90)), 1),
        noise_exponent=round(noise_exponent(kept), 2),
    )
