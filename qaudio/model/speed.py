"""Kernel choices that make a training step faster without changing what it computes.

* Attention in training on CPU: PyTorch's CPU flash-attention kernel is fast forward, but its
  backward was 10x its forward in bf16 on a Xeon profile of the demo step (15% of the step). The
  sequences qaudio trains on are short (audio slots + prompt + target: ~60 tokens for a 3 s clip),
  so the math backend, whose backward is plain matrix products on the matmul units, serves better.
  On GPUs SDPA's own choice (flash / memory-efficient kernels) is kept.
* AdamW: ``fused=True`` (one kernel per step; torch >= 2.4 on CPU and CUDA) instead of for-each ops.

``benchmarks/demo_step.py`` measures each choice against the first release's step. On 2 cores of
a Xeon with AMX (2026-11-30): bf16 step 300 -> 244 ms (1.23x; 37% of the bf16 matmul peak),
fp32 437 -> 418 ms (the fp32 step already runs at 71% of the fp32 peak); on an H200 the fused
AdamW took the bf16-autocast step from 231 to 26 ms.
"""

from __future__ import annotations

import contextlib

import torch


def training_attention(device: torch.device | str) -> contextlib.AbstractContextManager:
    """A context for the forward pass of training: SDPA's math backend on CPU, the default elsewhere."""
    if torch.device(device).type != "cpu":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def fused_adamw_supported(params: list[torch.Tensor]) -> bool:
    """Fused AdamW takes floating-point tensors on CPU or CUDA, all on one device type."""
    types = {p.device.type for p in params}
    return len(types) == 1 and types <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)
