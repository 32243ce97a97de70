"""How many audio tokens a clip becomes: samples -> mel frames -> encoder frames -> projector outputs.

This is THE one place for that arithmetic. The processor (:meth:`AudioProcessor.prepare`) expands the
``<|AUDIO|>`` placeholder to :func:`audio_token_count` slots, the projector returns that many
outputs per clip, and the model raises if the two disagree (Qwen2-Audio writes the formula in
three places; a mismatch there is silent). Every function takes Python ints or integer tensors.

Reference: Whisper (Radford et al., 2022, section 2.3 and ``whisper/audio.py``): 16 kHz audio,
25 ms windows with a 10 ms hop (160 samples), then two convolutions of kernel 3, the second
with stride 2, so one encoder frame covers 20 ms and 30 s give 1500 frames.
"""

from __future__ import annotations

from typing import TypeVar

import torch

from ..audio import SAMPLE_RATE
from ..config import ENCODER_KINDS, ModelConfig
from .projectors import PROJECTORS

HOP_LENGTH = 160  # samples between mel frames: Whisper's 10 ms STFT hop
N_FFT = 400  # samples per STFT window (25 ms): a clip needs this many zeros after it to end cleanly
CONV_STRIDE = 2  # Whisper's second convolution halves the frame rate
WHISPER_POSITIONS = 1500  # encoder positions of every Whisper checkpoint: 30 s

# A count, or a tensor of per-clip counts: each function returns the kind it is given.
Count = TypeVar("Count", int, torch.Tensor)


def mel_frame_count(num_samples: Count) -> Count:
    """Mel frames of a clip: one per 160-sample hop (the STFT's last, partial frame is dropped, as in Whisper)."""
    return num_samples // HOP_LENGTH


def _exactly_one(**given: Count | None) -> tuple[str, Count]:
    present = [(k, v) for k, v in given.items() if v is not None]
    if len(present) != 1:
        raise ValueError(f"give exactly one of {', '.join(given)}; got {', '.join(k for k, _ in present) or 'none'}")
    return present[0]


def encoder_frame_count(num_samples: Count | None = None, *, mel_frames: Count | None = None) -> Count:
    """Encoder output frames for a clip of ``num_samples`` samples (or ``mel_frames`` mel frames).

    conv1 (kernel 3, padding 1) keeps the length; conv2 (kernel 3, stride 2, padding 1) gives
    floor((T + 2 - 3) / 2) + 1 = (T - 1) // 2 + 1, i.e. ceil(T / 2).
    """
    kind, value = _exactly_one(num_samples=num_samples, mel_frames=mel_frames)
    frames = mel_frame_count(value) if kind == "num_samples" else value
    return (frames - 1) // CONV_STRIDE + 1


def tower_frame_count(encoder_frames: Count, kind: str) -> Count:
    """Frames out of the audio tower of ``kind`` (see ``qaudio.config.ENCODER_KINDS``).

    Qwen2-Audio average-pools pairs of encoder frames (kernel 2, stride 2, no padding), which
    keeps floor(T / 2): its processor's ``((T - 1) // 2 + 1 - 2) // 2 + 1`` for T mel frames.
    """
    return encoder_frames // ENCODER_KINDS[kind].pool


def audio_token_count(
    num_samples: Count | None,
    config: ModelConfig,
    *,
    mel_frames: Count | None = None,
    encoder_frames: Count | None = None,
) -> Count:
    """The number of ``<|AUDIO|>`` slots (projector outputs) for one clip.

    Give the clip's length in exactly one unit: ``num_samples`` (16 kHz), ``mel_frames`` or
    ``encoder_frames`` (for cached encoder states: the audio tower's output frames). With
    ``pad_to_30s`` the count is the same: the encoder output is cut to the clip's real frames in
    both modes.
    """
    kind, value = _exactly_one(num_samples=num_samples, mel_frames=mel_frames, encoder_frames=encoder_frames)
    if kind != "encoder_frames":  # cached encoder states are the tower's output: already pooled
        value = tower_frame_count(encoder_frame_count(**{kind: value}), config.encoder.kind)
    return PROJECTORS[config.projector.name].output_length(value, config.projector)


def max_samples(encoder_positions: int = WHISPER_POSITIONS) -> int:
    """The longest clip the encoder takes in one window (480000 samples = 30 s for Whisper)."""
    return encoder_positions * CONV_STRIDE * HOP_LENGTH


def max_seconds(encoder_positions: int = WHISPER_POSITIONS) -> float:
    return max_samples(encoder_positions) / SAMPLE_RATE
