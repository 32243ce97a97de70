"""Checkpoints: written atomically, the last K kept, the latest complete one found on resume.

A checkpoint is a directory ``RUN/checkpoints/step-00000100/`` holding the trainable weights
(``trainable.safetensors``; frozen weights are rebuilt from the model config and seed),
``optimizer.pt``, ``scheduler.pt``, one ``rng-rank<R>.pt`` per process, the resolved
configs, and ``state.json`` (step, data position, bad-data counts), written last. Every file
goes into ``.tmp-step-00000100/`` first and the directory is renamed when all are written:
a rename is atomic on POSIX, so a run killed mid-save leaves a stale temporary directory
(removed at the next start) and never a half-written checkpoint under a final name.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

CHECKPOINTS = "checkpoints"
STATE_FILE = "state.json"  # written last; its presence marks a complete checkpoint
TRAINABLE_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
_NAME = re.compile(r"^step-(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def complete_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _NAME.match(d.name)
        if m and d.is_dir() and (d / STATE_FILE).is_file():
            found.append((int(m.group(1)), d))
    return [d for _, d in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def remove_stale_staging(run_dir: str | os.PathLike) -> list[Path]:
    """Delete temporary directories left by a run killed while saving; returns them."""
    root = Path(run_dir) / CHECKPOINTS
    stale = sorted(root.glob(".tmp-*")) if root.is_dir() else []
    for d in stale:
        shutil.rmtree(d, ignore_errors=True)
    return stale


def staging_dir(run_dir: str | os.PathLike, step: int) -> Path:
    """A fresh temporary directory for the checkpoint of ``step``."""
    d = Path(run_dir) / CHECKPOINTS / f".tmp-{checkpoint_name(step)}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def commit(staging: Path, state: dict, keep: int) -> Path:
    """Write ``state.json`` last, rename the directory into place, keep the last ``keep``."""
    step = int(state["step"])
    tmp_state = staging / (STATE_FILE + ".tmp")
    tmp_state.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(tmp_state, staging / STATE_FILE)
    final = staging.parent / checkpoint_name(step)
    if final.exists():  # the same step saved again (e.g. the last step was also a save step)
        shutil.rmtree(final)
    os.rename(staging, final)
    for old in complete_checkpoints(staging.parent.parent)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(checkpoint: str | os.PathLike) -> dict:
    path = Path(checkpoint) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint (no {STATE_FILE}); "
                                f"expected a directory like RUN/{CHECKPOINTS}/step-00000100")
    return json.loads(path.read_text(encoding="utf-8"))


# ---- trainable weights ---------------------------------------------------------------------


def save_trainable(model: torch.nn.Module, names: list[str], path: Path) -> None:
    """The trainable parameters only, by name, as safetensors."""
    from safetensors.torch import save_file

    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"trainable parameter(s) not in the model: {', '.join(missing[:5])}")
    save_file({n: params[n].detach().to("cpu").contiguous() for n in names}, str(path))


def load_trainable(model: torch.nn.Module, names: list[str], path: Path) -> None:
    """Load trainable weights saved by :func:`save_trainable`; a mismatch names the keys."""
    from safetensors.torch import load_file

    saved = load_file(str(path))
    missing, unexpected = sorted(set(names) - set(saved)), sorted(set(saved) - set(names))
    if missing or unexpected:
        raise ValueError(f"{path} does not fit this model's trainable set: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]} (was the model or what trains changed?)")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in saved.items():
            if params[name].shape != tensor.shape:
                raise ValueError(f"{path}: {name} has shape {tuple(tensor.shape)}, the model has "
                                 f"{tuple(params[name].shape)}")
            params[name].copy_(tensor)


# ---- random number generators ----------------------------------------------------------------


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def rng_file(checkpoint: Path, rank: int) -> Path:
    return checkpoint / f"rng-rank{rank}.pt"


def save_rng(checkpoint: Path, rank: int) -> None:
    torch.save(rng_state(), rng_file(checkpoint, rank))


def load_rng(checkpoint: Path, rank: int) -> None:
    path = rng_file(checkpoint, rank)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the checkpoint was written by fewer processes "
                                "(resume with the same number of processes)")
    # Our own file; it holds NumPy's state tuple, which the weights-only loader refuses.
    set_rng_state(torch.load(path, weights_only=False))
