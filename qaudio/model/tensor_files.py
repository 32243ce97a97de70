"""safetensors files of state dicts whose tensors may share memory (tied weights).

safetensors refuses two names for one storage (a tied embedding and output head; peft's
trainable-token rows, one delta shared by the embedding and the tied head). Each tensor is
stored once under its first name, and the other names are listed in the file's metadata
(``"aliases": {alias: stored name}``); reading gives every name back, the aliases pointing
at the same tensor, so loading a state dict restores the tie.

Reference: safetensors' notes on shared tensors (``safetensors.torch.save_model``), which
keep one name per storage in the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def save_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``state`` to ``path``, each shared tensor once and its other names as aliases."""
    stored: dict[tuple, str] = {}
    tensors, aliases = {}, {}
    for name, tensor in state.items():
        key = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if key in stored:
            aliases[name] = stored[key]
        else:
            stored[key] = name
            tensors[name] = tensor.detach().contiguous()
    save_file(tensors, str(path), metadata={"format": "pt", "aliases": json.dumps(aliases)})


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a file written by :func:`save_tensors` (or any safetensors file), aliases included."""
    state = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    for alias, name in aliases.items():
        state[alias] = state[name]
    return state
