"""How many audio tokens a clip becomes: samples -> mel frames -> encoder frames -> projector outputs.

This is THE one place for that arithmetic. The processor (:meth:`AudioProcessor.prepare`) expands the
``<|AUDIO|>`` placeholder to :func:`audio_token_count` slots, the projector returns that many
outputs per clip, and the model raises if the two disagree (Qwen2-Audio writes the formula in
three places; a mismatch there is silent). Every function takes Python ints or integer tensors.

**A second audio tower** (``ModelConfig.towers``, e.g. AST) does not change the count. Its
frames are put on the Whisper tower's grid before the two are concatenated: output frame ``j``
of the Whisper tower starts at mel frame ``m = j * CONV_STRIDE * pool`` (20 ms, or 40 ms for
Qwen2-Audio's pooled tower), and takes the second tower's window ``m // max_frames`` and patch
column ``(m mod max_frames) // time_stride`` (AST: 100 ms columns, so each repeats for 5 Whisper
frames). :func:`tower_frame_sources` is that rule and :func:`tower_window_count` the windows it
touches, so the processor cuts exactly the windows the model reads, and a clip longer than one
window is chunked, never truncated. Why Whisper's grid, not the coarser one: the audio-token
count, the projectors, the feature cache and every saved Whisper-only model stay as they are,
and speech (what Whisper carries) keeps its 20 ms resolution; sound events change more slowly.

Reference: Whisper (Radford et al., 2022, section 2.3 and ``whisper/audio.py``): 16 kHz audio,
25 ms windows with a 10 ms hop (160 samples), then two convolutions of kernel 3, the second
with stride 2, so one encoder frame covers 20 ms and 30 s give 1500 frames. AST (Gong et al.,
2021, section 2.1): 16x16 patches of a 128-bin, 10 ms log-mel every 10 bins and 10 frames.
"""

from __future__ import annotations

from typing import TypeVar

import torch

from ..audio import SAMPLE_RATE
from ..config import ENCODER_KINDS, ModelConfig, TowerConfig
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
    both modes, and with second towers (``config.towers``): they are aligned to these frames.
    """
    kind, value = _exactly_one(num_samples=num_samples, mel_frames=mel_frames, encoder_frames=encoder_frames)
    if kind != "encoder_frames":  # cached encoder states are the tower's output: already pooled
        value = tower_frame_count(encoder_frame_count(**{kind: value}), config.encoder.kind)
    return PROJECTORS[config.projector.name].output_length(value, config.projector)


def slots_seconds(slots: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """The audio that ``slots`` (B,) audio slots cover, in seconds (B,): at least the clip, less than a slot more.

    Every projector maps each run of ``stack`` tower frames to the same number of outputs (one,
    or the Q-Former's queries), so the slots cover ``ceil(slots / outputs_per_run)`` runs.
    """
    projector = PROJECTORS[config.projector.name]
    per_run = projector.output_length(config.projector.stack, config.projector)
    run_seconds = config.projector.stack * max_seconds() / tower_frame_count(WHISPER_POSITIONS, config.encoder.kind)
    return (slots + per_run - 1) // per_run * run_seconds


def max_samples(encoder_positions: int = WHISPER_POSITIONS) -> int:
    """The longest clip the encoder takes in one window (480000 samples = 30 s for Whisper)."""
    return encoder_positions * CONV_STRIDE * HOP_LENGTH


def max_seconds(encoder_positions: int = WHISPER_POSITIONS) -> float:
    return max_samples(encoder_positions) / SAMPLE_RATE


# ---- A second audio tower on the Whisper tower's grid (see the module docstring) --------------


def tower_patch_grid(tower: TowerConfig) -> tuple[int, int]:
    """(frequency, time) patches of one tower window: (128 - 16) // 10 + 1 = 12 by (1024 - 16) // 10 + 1 = 101 for AST."""
    return (
        (tower.n_mels - tower.patch) // tower.frequency_stride + 1,
        (tower.max_frames - tower.patch) // tower.time_stride + 1,
    )


def mel_frames_per_tower_frame(config: ModelConfig) -> int:
    """Mel frames (10 ms) per output frame of the Whisper tower: 2 (20 ms), or 4 with Qwen2-Audio's pooling."""
    return CONV_STRIDE * ENCODER_KINDS[config.encoder.kind].pool


def tower_frame_sources(frames: int, config: ModelConfig, tower: TowerConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """For Whisper-tower frames ``0 .. frames-1``: the second tower's window and patch column feeding each, (frames,) x 2.

    A column starting past the window's last patch (AST: mel frames 1010-1023 of a 1024-frame
    window) takes that last patch, the nearest one.
    """
    mel = torch.arange(frames) * mel_frames_per_tower_frame(config)  # (frames,) first mel frame of each
    window = mel // tower.max_frames
    column = ((mel % tower.max_frames) // tower.time_stride).clamp(max=tower_patch_grid(tower)[1] - 1)
    return window, column


def tower_window_count(
    num_samples: Count | None, config: ModelConfig, tower: TowerConfig, *, mel_frames: Count | None = None
) -> Count:
    """Windows of ``tower.max_frames`` mel frames the clip's aligned frames read: one past the last frame's window.

    The processor cuts the clip into exactly these windows (the last one partial, zero padded
    by the tower's feature extractor); a clip has at least one.
    """
    kind, value = _exactly_one(num_samples=num_samples, mel_frames=mel_frames)
    return tower_windows_read(
        tower_frame_count(encoder_frame_count(**{kind: value}), config.encoder.kind), config, tower
    )


def tower_windows_read(frames: Count, config: ModelConfig, tower: TowerConfig) -> Count:
    """Windows that Whisper-tower frames ``0 .. frames-1`` read (:func:`tower_frame_sources`), at least one."""
    last = (frames - 1) * mel_frames_per_tower_frame(config)  # first mel frame of the last aligned frame
    windows = last // tower.max_frames + 1
    return windows.clamp(min=1) if isinstance(windows, torch.Tensor) else max(windows, 1)
