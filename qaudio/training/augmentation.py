"""Audio augmentation for training: noise, gain, speed perturbation, SpecAugment, and masks on
cached encoder outputs (``--augment noise,gain,speed,specaugment`` or ``--augment feature-mask``).

=============  =========================================================================================
noise          a background added at a signal-to-noise ratio drawn from ``--augment-snr-db``: the
               synthetic scene textures of :mod:`qaudio.synth.scenes`, or the files of
               ``--augment-noise-dir`` (as MUSAN's noise part is used: Snyder et al., 2015)
gain           the clip scaled by a gain drawn from ``--augment-gain-db``
speed          speed perturbation (Ko et al., "Audio augmentation for speech recognition",
               Interspeech 2015): the clip resampled by a factor drawn from ``--augment-speeds``
               (0.9, 1.0, 1.1 as Kaldi and ESPnet do), which changes tempo and pitch together;
               time tokens in the target are rescaled with it
specaugment    frequency and time masks on the log-mel (Park et al., "SpecAugment", Interspeech
               2019, section 2): ``m_F`` masks of width ``f ~ U[0, F]`` bins and ``m_T`` masks of
               width ``t ~ U[0, min(T, p x frames)]``, filled with the clip's mean (the paper's zero
               on mean-normalised features)
feature-mask   the same masks on cached encoder outputs (time over encoder frames, channels for
               bins): the one augmentation that works with ``--cache-encoder``
=============  =========================================================================================

Waveform and log-mel augmentations change what the encoder sees, so they turn the encoder
cache off (:func:`use_encoder_cache` says so in the log).

Determinism: every augmented example draws from its own ``numpy`` Generator seeded by a hash of
(seed, stream position, example id). A micro-batch's stream position fixes the optimizer step it
trains in, so an uninterrupted run, a resumed one, every process and every data-loader worker
make the same audio, and there is no random state to checkpoint (the collator's reference
choice works the same way). Dev batches (position -1) and evaluation are never augmented.

Imports no torch (the training config validates its flags with :meth:`AugmentSpec.from_config`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from .corpus import Item

SAMPLE_RATE = 16_000  # Hz (qaudio.audio.SAMPLE_RATE, which imports more than this module needs)

# name -> (what it changes, default probability, one line for the docs and errors)
WAVEFORM, LOG_MEL, ENCODER_STATES = "waveform", "log-mel", "encoder outputs"
AUGMENTATIONS: dict[str, tuple[str, float, str]] = {
    "speed": (WAVEFORM, 1.0, "speed perturbation by a factor of --augment-speeds (1.0 among them: no change)"),
    "gain": (WAVEFORM, 0.5, "gain in dB drawn from --augment-gain-db"),
    "noise": (WAVEFORM, 0.5, "scene textures or --augment-noise-dir files at an SNR from --augment-snr-db"),
    "specaugment": (LOG_MEL, 1.0, "SpecAugment frequency and time masks on the log-mel"),
    "feature-mask": (ENCODER_STATES, 1.0, "SpecAugment-like masks on cached encoder outputs"),
}
NOISE_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus")
TIME_TOKEN = re.compile(r"<\|(\d+\.\d\d)\|>")  # qaudio.tags' time tokens, <|0.00|> ... <|30.00|>


# ---- The settings ------------------------------------------------------------------------------


def parse_augment(text: str) -> dict[str, float]:
    """``noise:0.3,gain,speed`` -> {name: probability} in application order (a name alone: its default)."""
    chosen: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, prob_text = part.partition(":")
        name = name.strip()
        if name not in AUGMENTATIONS:
            raise ValueError(f"--augment: unknown augmentation {name!r}; expected some of {', '.join(AUGMENTATIONS)}")
        prob = AUGMENTATIONS[name][1]
        if prob_text.strip():
            try:
                prob = float(prob_text)
            except ValueError:
                raise ValueError(
                    f"--augment: {part!r}: the probability {prob_text!r} is not a number; write NAME:P with P in [0, 1]"
                ) from None
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"--augment: {part!r}: probability {prob:g} is outside [0, 1]")
        chosen[name] = prob
    return {name: chosen[name] for name in AUGMENTATIONS if name in chosen}


def parse_numbers(flag: str, text: str, count: int | None, low: float, high: float) -> tuple[float, ...]:
    """Comma-separated numbers in [low, high]: exactly ``count`` of them (a LO,HI range, ascending), or
    one or more when ``count`` is None."""
    try:
        values = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--{flag} is {text!r}; expected comma-separated numbers") from None
    if count is not None and (len(values) != count or list(values) != sorted(values)):
        raise ValueError(f"--{flag} is {text!r}; expected LO,HI with LO <= HI")
    if not values or any(not low <= v <= high for v in values):
        raise ValueError(f"--{flag} is {text!r}; expected numbers in [{low:g}, {high:g}]")
    return values


@dataclass(frozen=True)
class AugmentSpec:
    """What ``--augment`` and the ``--augment-*`` flags ask for, checked."""

    probabilities: dict[str, float]  # name -> probability, in application order
    tasks: tuple[str, ...] | None = None  # the tasks whose examples are augmented; None = all
    noise_dir: str | None = None  # a folder of noise files; None = the synthetic scene textures
    snr_db: tuple[float, float] = (5.0, 20.0)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)
    freq_masks: int = 2  # m_F
    freq_width: int = 27  # F, mel bins
    time_masks: int = 2  # m_T
    time_width: int = 40  # T, mel frames of 10 ms
    time_ratio: float = 0.2  # p: no time mask wider than this fraction of the clip

    @classmethod
    def from_config(cls, cfg: Any) -> AugmentSpec:
        """The spec of a :class:`~qaudio.training.config.TrainConfig`; ValueError naming a bad flag."""
        for name in ("augment_freq_masks", "augment_freq_width", "augment_time_masks", "augment_time_width"):
            value = getattr(cfg, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be a whole number >= 0, got {value!r}")
        if not 0.0 <= cfg.augment_time_ratio <= 1.0:
            raise ValueError(f"--augment-time-ratio must be in [0, 1], got {cfg.augment_time_ratio!r}")
        tasks = tuple(t.strip() for t in cfg.augment_tasks.split(",") if t.strip())
        if not tasks:
            raise ValueError("--augment-tasks is empty; give 'all' or comma-separated task names")
        snr = parse_numbers("augment-snr-db", cfg.augment_snr_db, 2, -30.0, 60.0)
        gain = parse_numbers("augment-gain-db", cfg.augment_gain_db, 2, -40.0, 40.0)
        return cls(
            probabilities=parse_augment(cfg.augment),
            tasks=None if tasks == ("all",) else tasks,
            noise_dir=cfg.augment_noise_dir or None,
            snr_db=(snr[0], snr[1]),
            gain_db=(gain[0], gain[1]),
            speeds=parse_numbers("augment-speeds", cfg.augment_speeds, None, 0.5, 2.0),
            freq_masks=cfg.augment_freq_masks,
            freq_width=cfg.augment_freq_width,
            time_masks=cfg.augment_time_masks,
            time_width=cfg.augment_time_width,
            time_ratio=cfg.augment_time_ratio,
        )

    def changes(self, what: str) -> list[str]:
        """The chosen augmentations that change ``what`` (WAVEFORM, LOG_MEL or ENCODER_STATES)."""
        return [name for name in self.probabilities if AUGMENTATIONS[name][0] == what]

    @property
    def before_encoder(self) -> list[str]:
        """The chosen augmentations that change the encoder's input (so its outputs cannot be cached)."""
        return self.changes(WAVEFORM) + self.changes(LOG_MEL)


def use_encoder_cache(spec: AugmentSpec | None, cache_dir: str | None, log: Callable[[str], None]) -> bool:
    """Whether training reads ``--cache-encoder``: waveform and log-mel augmentation turn it off (said
    in the log); ``feature-mask`` needs it. Raises when the two kinds are asked for together."""
    if spec is None or not spec.probabilities:
        return cache_dir is not None
    before, on_states = spec.before_encoder, spec.changes(ENCODER_STATES)
    if before and on_states:
        raise ValueError(
            f"--augment {','.join(spec.probabilities)}: feature-mask masks cached encoder outputs, but "
            f"{', '.join(before)} change the audio before the encoder, which turns the cache off; choose "
            "either feature-mask (with --cache-encoder) or the others"
        )
    if on_states and cache_dir is None:
        raise ValueError(
            "--augment feature-mask masks cached encoder outputs and needs --cache-encoder DIR; without the "
            "cache, use --augment specaugment (the same masks on the log-mel)"
        )
    if before and cache_dir is not None:
        log(
            f"qaudio train: --augment {','.join(before)} changes the audio before the encoder, so the encoder "
            f"cache ({cache_dir}) is off for this run: the encoder runs in every step. To keep the cache, "
            "augment the cached features instead (--augment feature-mask)"
        )
        return False
    return cache_dir is not None


# ---- Noise sources -------------------------------------------------------------------------------


def crop(noise: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``noise`` from a random offset, wrapping around when it is shorter."""
    start = int(rng.integers(0, len(noise)))
    return np.take(noise, np.arange(start, start + n), mode="wrap")


class SceneNoise:
    """The scene textures of :mod:`qaudio.synth.scenes` (all but the babble, which needs speech synthesis),
    rendered once per process from the run's seed, so every process and worker holds the same ones."""

    SECONDS = 8.0  # per texture: a random offset into it (wrapping) gives the variety

    def __init__(self, seed: int):
        self.seed = seed
        self._bank: list[np.ndarray] | None = None  # rendered on first use, in the process that uses it

    @property
    def bank(self) -> list[np.ndarray]:
        if self._bank is None:
            from ..synth.scenes import SCENES, render_scene

            rng = np.random.default_rng([self.seed, 0x6E6F697365])
            self._bank = [
                render_scene(name, rng, duration_s=self.SECONDS) for name, scene in SCENES.items() if not scene.talkers
            ]
        return self._bank

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        bank = self.bank
        return crop(bank[int(rng.integers(0, len(bank)))], n, rng)

    def __getstate__(self) -> dict:  # data-loader workers render their own copy
        return {"seed": self.seed, "_bank": None}


class FolderNoise:
    """Noise files under a folder (searched recursively, sorted, so the draws are reproducible);
    every file's header is read at start, so an unreadable file stops the run before training."""

    def __init__(self, folder: str | Path):
        import soundfile as sf

        root = Path(folder)
        if not root.is_dir():
            raise ValueError(f"--augment-noise-dir {folder}: not a folder; expected a folder of noise audio files")
        try:
            self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in NOISE_SUFFIXES and p.is_file())
        except OSError as e:
            raise ValueError(f"--augment-noise-dir {folder}: cannot be read ({e})") from None
        if not self.files:
            raise ValueError(
                f"--augment-noise-dir {folder}: no noise files in it; expected audio files "
                f"({', '.join(NOISE_SUFFIXES)}), in it or in its subfolders"
            )
        unreadable = []
        for path in self.files:
            try:
                if sf.info(str(path)).frames < 160:
                    unreadable.append(f"{path} (shorter than 10 ms)")
            except (RuntimeError, OSError) as e:  # soundfile's LibsndfileError is a RuntimeError
                unreadable.append(f"{path} ({e})")
        if unreadable:
            raise ValueError(
                f"--augment-noise-dir {folder}: {len(unreadable)} of {len(self.files)} file(s) cannot be used: "
                + "; ".join(unreadable[:3])
                + ("; ..." if len(unreadable) > 3 else "")
                + ". Remove or convert them (16-bit WAV or FLAC)"
            )

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return crop(_noise_file(str(self.files[int(rng.integers(0, len(self.files)))])), n, rng)


@lru_cache(maxsize=64)
def _noise_file(path: str) -> np.ndarray:
    from ..audio import load_audio

    return load_audio(path).samples  # (T,) float32, 16 kHz


# ---- The augmentations -----------------------------------------------------------------------------


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def apply_gain(samples: np.ndarray, db: float) -> np.ndarray:
    """``samples`` times 10^(db/20); not clipped (float samples: the log-mel takes any level)."""
    return (samples * 10 ** (db / 20)).astype(np.float32)


def mix_at_snr(samples: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``samples`` plus ``noise`` scaled so that RMS(samples) / RMS(noise) is ``snr_db`` decibels."""
    scale = rms(samples) / (rms(noise) * 10 ** (snr_db / 20) + 1e-12)
    return (samples + scale * noise).astype(np.float32)


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play ``samples`` ``factor`` times faster (tempo and pitch): read as if recorded at
    factor x 16 kHz and resampled to 16 kHz (soxr, as :mod:`qaudio.audio` resamples), so the
    length becomes len / factor."""
    if factor == 1.0:
        return samples
    import librosa

    out = librosa.resample(samples, orig_sr=SAMPLE_RATE * factor, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    return np.ascontiguousarray(out, dtype=np.float32)


def retime(target: str, factor: float) -> str:
    """A target's time tokens moved to where their words are after a speed change by ``factor``."""
    if factor == 1.0:
        return target
    from ..tags import time_token

    return TIME_TOKEN.sub(lambda m: time_token(float(m[1]) / factor), target)


def mask_spans(rng: np.random.Generator, size: int, count: int, max_width: int) -> list[tuple[int, int]]:
    """``count`` spans [start, end) of width ~ U[0, max_width] (clamped to ``size``) placed uniformly."""
    spans = []
    for _ in range(count):
        width = int(rng.integers(0, min(max_width, size) + 1))
        start = int(rng.integers(0, size - width + 1))
        spans.append((start, start + width))
    return spans


def apply_masks(x: Any, rng: np.random.Generator, masks: tuple[int, int, int, int]) -> Any:
    """Mask ``x`` (channels, frames) in place: (channel masks, max width, frame masks, max width),
    filled with the mean of ``x`` before masking. Works on a numpy array or a torch tensor."""
    channels, frames = x.shape
    n_channel, channel_width, n_time, time_width = masks
    fill = float(x.mean())
    for a, b in mask_spans(rng, channels, n_channel, channel_width):
        x[a:b, :] = fill
    for a, b in mask_spans(rng, frames, n_time, time_width):
        x[:, a:b] = fill
    return x


# ---- One example's augmentation -----------------------------------------------------------------------


class Augmenter:
    """The augmentations of :class:`AugmentSpec`, applied per example by the training collator.

    ``max_seconds``: the encoder window; a clip that speed perturbation would make longer keeps its speed.
    """

    def __init__(self, spec: AugmentSpec, seed: int, max_seconds: float):
        self.spec, self.seed = spec, seed
        self.max_samples = round(max_seconds * SAMPLE_RATE)
        self.noise: SceneNoise | FolderNoise | None = None
        if "noise" in spec.probabilities:
            self.noise = FolderNoise(spec.noise_dir) if spec.noise_dir else SceneNoise(seed)

    def describe(self) -> str:
        parts = [f"{name} p={p:g}" for name, p in self.spec.probabilities.items()]
        source = self.spec.noise_dir or "synthetic scene textures"
        noise = f"; noise from {source}, SNR {self.spec.snr_db[0]:g}..{self.spec.snr_db[1]:g} dB" if self.noise else ""
        tasks = ", ".join(self.spec.tasks) if self.spec.tasks else "all tasks"
        return f"augmenting training examples ({tasks}): {', '.join(parts)}{noise}"

    def rng(self, position: int, example_id: str) -> np.random.Generator:
        """The example's own generator: a hash of (seed, stream position, example id)."""
        digest = hashlib.blake2b(f"augment:{self.seed}:{position}:{example_id}".encode(), digest_size=16).digest()
        return np.random.default_rng(int.from_bytes(digest, "little"))

    def rng_for(self, item: Item, position: int) -> np.random.Generator | None:
        """None when the example is not augmented: a dev batch (position < 0) or a task not chosen."""
        if position < 0 or (self.spec.tasks is not None and item.example.task not in self.spec.tasks):
            return None
        return self.rng(position, item.example.id)

    def _drawn(self, name: str, rng: np.random.Generator) -> bool:
        return name in self.spec.probabilities and rng.random() < self.spec.probabilities[name]

    def waveform(self, samples: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """Speed, then gain, then noise (so the noise keeps its pitch); returns (samples, speed factor)."""
        factor = 1.0
        if self._drawn("speed", rng):
            factor = float(self.spec.speeds[int(rng.integers(0, len(self.spec.speeds)))])
            if len(samples) / factor > self.max_samples:
                factor = 1.0  # slowed down it would not fit the encoder window
            samples = change_speed(samples, factor)
        if self._drawn("gain", rng):
            samples = apply_gain(samples, float(rng.uniform(*self.spec.gain_db)))
        if self._drawn("noise", rng):
            assert self.noise is not None  # made in __init__ when noise is chosen
            snr = float(rng.uniform(*self.spec.snr_db))
            samples = mix_at_snr(samples, self.noise.draw(rng, len(samples)), snr)
        return samples, factor

    def log_mel(self, features: Any, rng: np.random.Generator) -> None:
        """SpecAugment on one clip's real log-mel frames (n_mels, T), in place."""
        if self._drawn("specaugment", rng):
            s = self.spec
            width = min(s.time_width, int(s.time_ratio * features.shape[1]))
            apply_masks(features, rng, (s.freq_masks, s.freq_width, s.time_masks, width))

    def encoder_states(self, states: torch.Tensor, n_mels: int, rng: np.random.Generator) -> torch.Tensor:
        """feature-mask on one clip's cached encoder outputs (T', D): a masked copy (the cache's tensor
        is left as it is). Widths follow the log-mel's: encoder frames are two mel frames, and a mask
        covers the same fraction of the channels as ``F`` of the mel bins."""
        if not self._drawn("feature-mask", rng):
            return states
        s = self.spec
        frames, channels = states.shape
        time_width = min(-(-s.time_width // 2), int(s.time_ratio * frames))  # ceil: Whisper's stride-2 conv
        channel_width = round(s.freq_width / n_mels * channels)
        masked = states.clone().T  # (D, T'): channels first, as apply_masks takes them
        return apply_masks(masked, rng, (s.freq_masks, channel_width, s.time_masks, time_width)).T

    # ---- The collator's two calls -----------------------------------------------------------------

    def before_encoder(
        self, signals: Sequence[Any], targets: list[str], rngs: Sequence[np.random.Generator | None], n_mels: int
    ) -> tuple[list[Any], list[str]]:
        """Rows' samples (T,) -> augmented samples, their targets retimed; or, with cached
        encoder outputs (T', D_enc), the masked outputs."""
        signals, targets = list(signals), list(targets)
        for i, rng in enumerate(rngs):
            if rng is None:
                continue
            if isinstance(signals[i], np.ndarray):
                signals[i], factor = self.waveform(signals[i], rng)
                targets[i] = retime(targets[i], factor)
            else:
                signals[i] = self.encoder_states(signals[i], n_mels, rng)
        return signals, targets

    def after_log_mel(
        self, features: torch.Tensor, lengths: torch.Tensor, rngs: Sequence[np.random.Generator | None]
    ) -> None:
        """SpecAugment on a batch's log-mels (B, n_mels, T_max), each row over its real frames only."""
        for i, rng in enumerate(rngs):
            if rng is not None:
                self.log_mel(features[i, :, : int(lengths[i])], rng)
