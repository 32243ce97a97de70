"""Projectors: encoder frames (B, T, D_enc) -> LLM input embeddings (B, N, H), chosen by name.

Every projector has the same interface:

* ``__init__(config: ProjectorConfig, in_dim: int, out_dim: int, embed_rms: float)``
* ``forward(states (B, T, D_enc), lengths (B,)) -> (embeds (B, N, H), counts (B,))``: ``lengths``
  are each clip's real encoder frames; ``counts`` its real outputs. Rows past ``counts`` are
  padding. Frames past ``lengths`` are zeroed first, so a clip's outputs do not depend on
  what else is in the batch.
* ``output_length(frames, config)``: outputs for ``frames`` encoder frames, used by
  :func:`qaudio.model.lengths.audio_token_count` (never re-derived elsewhere).

With ``stack = k`` (Whisper's 50 frames/s):

============  ====================================================  ============================
name          what                                                  outputs per clip
============  ====================================================  ============================
``linear``    stack k frames, one Linear (LLaVA-1's projector)      ceil(T / k)
``mlp``       stack k frames, Linear-GELU-Linear, RMSNorm           ceil(T / k)
``conv``      Conv1d kernel k+2 stride k, GELU, Linear, RMSNorm     ceil(T / k)
``qformer``   windows of k frames, num_queries learned queries      ceil(T / k) * num_queries
              cross-attend to their window (SALMONN's window-level
              Q-Former), Linear, RMSNorm
============  ====================================================  ============================

The output RMSNorm's gain starts at the RMS of the LLM's token embeddings: a pretrained LLM's
embeddings are small (about 0.01-0.05 per element for Qwen2.5), and audio embeddings at unit
scale would swamp the text around them in the first steps (tiny-audio's projector does the same).

References: LLaVA (Liu et al., 2023) for linear/MLP projection; SLAM-ASR (Ma et al., 2024)
for frame stacking before an MLP; BLIP-2 (Li et al., 2023) for the Q-Former; SALMONN
(Tang et al., 2024, section 3.1) for applying it per window so the count grows with length.
"""

from __future__ import annotations

from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ProjectorConfig

Frames = TypeVar("Frames", int, torch.Tensor)  # a frame count, or a tensor of per-clip counts


def _ceil_div(n: Frames, k: int) -> Frames:
    return (n + k - 1) // k


def _zero_padding(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    valid = torch.arange(states.shape[1], device=states.device) < lengths[:, None]  # (B, T)
    return states * valid[..., None].to(states.dtype)  # (B, T, D)


def _stack_frames(states: torch.Tensor, lengths: torch.Tensor, k: int) -> torch.Tensor:
    """(B, T, D) -> (B, ceil(T/k), k*D): k adjacent frames side by side; the tail is zero-filled."""
    batch, frames, dim = states.shape
    groups = _ceil_div(frames, k)
    states = F.pad(_zero_padding(states, lengths), (0, 0, 0, groups * k - frames))  # (B, groups*k, D)
    return states.reshape(batch, groups, k * dim)


class OutputNorm(nn.RMSNorm):
    """RMSNorm whose gain starts at the LLM embedding RMS (see the module docstring for why)."""

    def __init__(self, dim: int, embed_rms: float):
        super().__init__(dim, eps=1e-6)
        with torch.no_grad():
            self.weight.fill_(embed_rms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In float32, as the LLMs' own RMSNorms do: under bf16 autocast the mean square loses
        # precision, and torch's fused kernel wants input and weight of one dtype anyway.
        return F.rms_norm(x.float(), self.normalized_shape, self.weight.float(), self.eps).to(x.dtype)


class LinearProjector(nn.Module):
    """Stack ``stack`` frames and map them with one Linear: (B, T, D) -> (B, ceil(T/k), H)."""

    def __init__(self, config: ProjectorConfig, in_dim: int, out_dim: int, embed_rms: float = 1.0):
        super().__init__()
        self.stack = config.stack
        self.proj = nn.Linear(config.stack * in_dim, out_dim)

    @staticmethod
    def output_length(frames: Frames, config: ProjectorConfig) -> Frames:
        return _ceil_div(frames, config.stack)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stacked = _stack_frames(states, lengths, self.stack)  # (B, N, k*D)
        return self.proj(stacked), _ceil_div(lengths, self.stack)  # (B, N, H), (B,)


class MLPProjector(nn.Module):
    """Stack ``stack`` frames, then Linear -> GELU -> Linear -> RMSNorm: (B, T, D) -> (B, ceil(T/k), H)."""

    def __init__(self, config: ProjectorConfig, in_dim: int, out_dim: int, embed_rms: float = 1.0):
        super().__init__()
        self.stack = config.stack
        self.fc1 = nn.Linear(config.stack * in_dim, config.hidden)
        self.fc2 = nn.Linear(config.hidden, out_dim)
        self.norm = OutputNorm(out_dim, embed_rms)

    @staticmethod
    def output_length(frames: Frames, config: ProjectorConfig) -> Frames:
        return _ceil_div(frames, config.stack)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stacked = _stack_frames(states, lengths, self.stack)  # (B, N, k*D)
        out = self.norm(self.fc2(F.gelu(self.fc1(stacked))))  # (B, N, H)
        return out, _ceil_div(lengths, self.stack)


class ConvProjector(nn.Module):
    """Strided Conv1d (kernel k+2, stride k) -> GELU -> Linear -> RMSNorm: (B, T, D) -> (B, ceil(T/k), H).

    Output j sees frames [j*k - 1, j*k + k]: its own k frames plus one neighbour on each side,
    so adjacent outputs overlap where plain stacking would cut words at group borders.
    """

    def __init__(self, config: ProjectorConfig, in_dim: int, out_dim: int, embed_rms: float = 1.0):
        super().__init__()
        self.stack = config.stack
        self.conv = nn.Conv1d(in_dim, config.hidden, kernel_size=config.stack + 2, stride=config.stack)
        self.proj = nn.Linear(config.hidden, out_dim)
        self.norm = OutputNorm(out_dim, embed_rms)

    @staticmethod
    def output_length(frames: Frames, config: ProjectorConfig) -> Frames:
        return _ceil_div(frames, config.stack)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = states.shape[1]
        groups = _ceil_div(frames, self.stack)
        x = _zero_padding(states, lengths).transpose(1, 2)  # (B, D, T)
        # One zero frame on the left; on the right up to (groups-1)*k + (k+2) frames in all,
        # so that exactly `groups` windows fit: (T_padded - (k+2)) // k + 1 == groups.
        x = F.pad(x, (1, groups * self.stack + 1 - frames))  # (B, D, groups*k + 2)
        x = F.gelu(self.conv(x)).transpose(1, 2)  # (B, groups, hidden)
        return self.norm(self.proj(x)), _ceil_div(lengths, self.stack)  # (B, groups, H)


class _QFormerLayer(nn.Module):
    """Pre-norm block: queries self-attend, cross-attend to the window's frames, then an MLP."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, queries: torch.Tensor, frames: torch.Tensor, frame_padding: torch.Tensor) -> torch.Tensor:
        q = self.norm_self(queries)  # (N, Q, C)
        queries = queries + self.self_attn(q, q, q, need_weights=False)[0]
        q = self.norm_cross(queries)
        queries = queries + self.cross_attn(q, frames, frames, key_padding_mask=frame_padding, need_weights=False)[0]
        return queries + self.mlp(self.norm_mlp(queries))  # (N, Q, C)


class QFormerProjector(nn.Module):
    """Window-level Q-Former: (B, T, D) -> (B, ceil(T/k) * num_queries, H).

    The frames are cut into windows of k; in each window ``num_queries`` learned queries
    cross-attend to the window's frames (padded frames masked), and each query becomes one
    output. Outputs are ordered window by window, so they follow the audio in time.
    """

    def __init__(self, config: ProjectorConfig, in_dim: int, out_dim: int, embed_rms: float = 1.0):
        super().__init__()
        self.stack = config.stack
        self.num_queries = config.num_queries
        self.in_proj = nn.Linear(in_dim, config.hidden)
        self.frame_positions = nn.Parameter(torch.randn(config.stack, config.hidden) * 0.02)  # position in window
        self.queries = nn.Parameter(torch.randn(config.num_queries, config.hidden) * 0.02)
        self.layers = nn.ModuleList(
            _QFormerLayer(config.hidden, config.qformer_heads) for _ in range(config.qformer_layers)
        )
        self.proj = nn.Linear(config.hidden, out_dim)
        self.norm = OutputNorm(out_dim, embed_rms)

    @staticmethod
    def output_length(frames: Frames, config: ProjectorConfig) -> Frames:
        return _ceil_div(frames, config.stack) * config.num_queries

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames, _ = states.shape
        k = self.stack
        windows = _ceil_div(frames, k)
        x = _stack_frames(states, lengths, k).reshape(batch * windows, k, -1)  # (B*W, k, D)
        x = self.in_proj(x) + self.frame_positions  # (B*W, k, C)
        valid = torch.arange(windows * k, device=states.device) < lengths[:, None]  # (B, W*k)
        valid = valid.reshape(batch * windows, k)  # (B*W, k)
        # A window wholly past the end of its clip has no frame to attend to; let it see its
        # zeros instead, which keeps the softmax finite. Its outputs are padding and never used.
        valid = valid | ~valid.any(dim=1, keepdim=True)
        queries = self.queries.expand(batch * windows, -1, -1)  # (B*W, Q, C)
        for layer in self.layers:
            queries = layer(queries, x, ~valid)
        out = self.norm(self.proj(queries)).reshape(batch, windows * self.num_queries, -1)  # (B, W*Q, H)
        return out, _ceil_div(lengths, k) * self.num_queries


PROJECTORS: dict[str, type[LinearProjector | MLPProjector | ConvProjector | QFormerProjector]] = {
    "linear": LinearProjector,
    "mlp": MLPProjector,
    "conv": ConvProjector,
    "qformer": QFormerProjector,
}


def build_projector(config: ProjectorConfig, in_dim: int, out_dim: int, embed_rms: float = 1.0) -> nn.Module:
    """The projector named by ``config.name``, mapping ``in_dim`` encoder features to ``out_dim``."""
    return PROJECTORS[config.name](config, in_dim, out_dim, embed_rms)
