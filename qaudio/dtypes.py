"""Dtype names, in one place: what ``--dtype``, ``--cache-dtype`` and config files accept.

Both spellings work everywhere: torch's (``float32``, ``bfloat16``, ``float16``) and the short
ones of mixed-precision flags (``fp32``, ``bf16``, ``fp16``). Importing this module does not
import torch; :func:`torch_dtype` does, when it is called.
"""

from __future__ import annotations

from typing import Any

# name -> torch's name for it
DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


def canonical_dtype(name: str) -> str:
    """``"bf16"`` -> ``"bfloat16"``; an unknown name raises with the valid ones."""
    if name not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {name!r}; valid choices: {', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[name]


def torch_dtype(name: Any) -> Any:
    """The ``torch.dtype`` for a name (a ``torch.dtype`` is returned as it is)."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    return getattr(torch, canonical_dtype(name))
