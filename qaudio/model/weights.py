"""Weights on disk and under other names: safetensors files and state-dict renaming, in one place.

Files: safetensors refuses two names for one storage (a tied embedding and output head; peft's
trainable-token rows, one delta shared by the embedding and the tied head). :func:`save_tensors`
stores each tensor once under its first name and lists the other names in the file's metadata
(``"aliases": {alias: stored name}``); :func:`load_tensors` gives every name back, the aliases
pointing at the same tensor, so loading a state dict restores the tie. A file for other readers
(a released model's format) gets :func:`untied` tensors instead: plain safetensors, no aliases.

Names: a conversion between layouts (qaudio's, Qwen2-Audio's, a CTranslate2 Whisper's) is a
renaming of keys (:func:`renamed`) followed by a check that the result fits the target exactly
(:func:`mismatches`), which names every missing, unexpected and mis-shaped key.

Reference: safetensors' notes on shared tensors (``safetensors.torch.save_model``), which
keep one name per storage in the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def _storage_key(tensor: torch.Tensor) -> tuple:
    """Equal for two names of one tensor (same storage, offset, shape and dtype)."""
    return (
        tensor.device,
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tensor.dtype,
    )


def save_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``state`` to ``path``, each shared tensor once and its other names as aliases."""
    stored: dict[tuple, str] = {}
    tensors, aliases = {}, {}
    for name, tensor in state.items():
        key = _storage_key(tensor)
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


def untied(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` detached and contiguous, a tensor that shares memory with an earlier one copied:
    what plain ``safetensors.torch.save_file`` accepts, for readers that know no aliases."""
    out, seen = {}, set()
    for name, tensor in state.items():
        tensor = tensor.detach().contiguous()
        key = _storage_key(tensor)
        out[name] = tensor.clone() if key in seen else tensor
        seen.add(key)
    return out


def renamed(state: Mapping[str, torch.Tensor], prefixes: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """``state`` with each key's prefix replaced by the first matching ``(old, new)`` pair.

    A key that no pair matches is an error (a weight the conversion would drop silently).
    """
    out = {}
    for key, tensor in state.items():
        pair = next(((old, new) for old, new in prefixes if key.startswith(old)), None)
        if pair is None:
            raise KeyError(f"weight {key!r} matches none of the prefixes {[old for old, _ in prefixes]}")
        out[pair[1] + key[len(pair[0]) :]] = tensor
    return out


def mismatches(state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]]) -> str:
    """What keeps ``state`` (name -> array with ``.shape``) from fitting ``expected`` (name -> shape)
    exactly: missing, unexpected and mis-shaped names; "" when it fits."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    mis_shaped = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(expected[k])}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k])
    ]
    if not (missing or unexpected or mis_shaped):
        return ""
    return f"missing {missing}, unexpected {unexpected}, mis-shaped {mis_shaped}"


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Every state-dict entry's shape (works on the meta device, with no memory allocated)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}
