"""Checkpoints: accelerate's saved state, written atomically, the last K kept, found on resume.

A checkpoint is a directory ``RUN/checkpoints/step-00000100/`` written by
``accelerator.save_state``: the trainable weights (``model.safetensors``: a save hook keeps
only the trainable set; frozen weights are rebuilt from the model config and seed), the
optimizer, the scheduler and the :class:`~qaudio.training.state.TrainState` (registered for
checkpointing), the fp16 GradScaler when one is used, and one ``random_states_<R>.pkl`` per
process; besides them the resolved configs and the tokenizer, and ``state.json`` (what a resume
reads before anything is built: step, schedule length, processes), written last. Under FSDP,
accelerate saves the sharded model and optimizer its own way. Every file goes into
``.tmp-step-00000100/`` first and the directory is renamed when all are written: a rename is
atomic on POSIX, so a run killed mid-save leaves a stale temporary directory (removed at the
next start) and never a half-written checkpoint under a final name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .config import TrainConfig
    from .state import TrainState


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
TRAINABLE_FILE = "model.safetensors"  # accelerate's name for the (here: trainable-only) model weights
FORMAT = "accelerate-state"  # state.json's "format"; checkpoints of qaudio 0.1.0 have none
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
    tmp_state.write_text(json.dumps({"format": FORMAT, **state}, indent=1), encoding="utf-8")
    os.replace(tmp_state, staging / STATE_FILE)
    final = staging.parent / checkpoint_name(step)
    if final.exists():  # the same step saved again (e.g. the last step was also a save step)
        shutil.rmtree(final)
    os.rename(staging, final)
    for old in complete_checkpoints(staging.parent.parent)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(checkpoint: str | os.PathLike) -> dict:
    """The ``state.json`` header of a complete checkpoint this version can resume."""
    path = Path(checkpoint) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{checkpoint} is not a complete checkpoint (no {STATE_FILE}); "
            f"expected a directory like RUN/{CHECKPOINTS}/step-00000100"
        )
    state = json.loads(path.read_text(encoding="utf-8"))
    if state.get("format") != FORMAT:
        raise ValueError(
            f"{checkpoint} was written by qaudio 0.1.0 (its own files: trainable.safetensors, "
            "optimizer.pt, rng-rank<R>.pt); this version resumes checkpoints written through "
            "accelerate's save_state only. Finish that run with qaudio 0.1.0, or start a new one "
            "(another --output-dir, or delete its checkpoints/ folder)"
        )
    return state


# ---- trainable weights ---------------------------------------------------------------------


def trainable_state_dict(model: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """The trainable parameters only, by name (CPU copies, ready for safetensors)."""
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"trainable parameter(s) not in the model: {', '.join(missing[:5])}")
    return {n: params[n].detach().to("cpu").contiguous() for n in names}


def save_trainable(model: torch.nn.Module, names: list[str], path: Path) -> None:
    """The trainable parameters only, by name, as safetensors."""
    from safetensors.torch import save_file

    save_file(trainable_state_dict(model, names), str(path))


def load_trainable(model: torch.nn.Module, names: list[str], path: Path) -> None:
    """Load trainable weights saved by :func:`save_trainable`; a mismatch names the keys."""
    from safetensors.torch import load_file

    saved = load_file(str(path))
    missing, unexpected = sorted(set(names) - set(saved)), sorted(set(saved) - set(names))
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit this model's trainable set: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]} (was the model or what trains changed?)"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in saved.items():
            if params[name].shape != tensor.shape:
                raise ValueError(
                    f"{path}: {name} has shape {tuple(tensor.shape)}, the model has {tuple(params[name].shape)}"
                )
            params[name].copy_(tensor)


def rng_state() -> dict:
    """Python's, NumPy's and torch's RNG states (the budget probe restores them after timing)."""
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


# ---- through accelerate's state ----------------------------------------------------------------


def register(accelerator: Accelerator, trainable: list[str], *objects: Any) -> None:
    """Make ``accelerator.save_state`` / ``load_state`` qaudio checkpoints: ``objects`` (the
    scheduler, the TrainState) are saved with the model, and the model's file holds its
    trainable weights only (the frozen encoder and LLM are rebuilt, never written)."""
    accelerator.register_for_checkpointing(*objects)

    def keep_trainable(models: list[nn.Module], weights: list[dict], output_dir: str) -> None:
        for model, state in zip(models, weights, strict=True):  # in place: accelerate writes these dicts next
            state.clear()
            state.update(trainable_state_dict(accelerator.unwrap_model(model), trainable))

    def load_trainable_weights(models: list[nn.Module], input_dir: str) -> None:
        for model in models:
            load_trainable(accelerator.unwrap_model(model), trainable, Path(input_dir) / TRAINABLE_FILE)
        models.clear()  # loaded here: accelerate's strict full-model load must not run

    accelerator.register_save_state_pre_hook(keep_trainable)
    accelerator.register_load_state_pre_hook(load_trainable_weights)


def save_checkpoint(
    run_dir: Path, cfg: TrainConfig, accelerator: Accelerator, model: nn.Module, state: TrainState
) -> Path | None:
    """Write a complete checkpoint of ``state`` (a TrainState) atomically; every process takes part."""
    from .config import to_yaml

    staging = Path(run_dir) / CHECKPOINTS / f".tmp-{checkpoint_name(state.step)}"
    if accelerator.is_main_process:
        staging_dir(run_dir, state.step)
    accelerator.wait_for_everyone()
    # The trainable weights, optimizer, scheduler, TrainState and scaler (main process); each process's RNGs.
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        (staging / "train_config.yaml").write_text(to_yaml(cfg.to_dict()), encoding="utf-8")
        unwrapped.config.save(staging / "model_config.json")
        unwrapped.processor.tokenizer.save_pretrained(str(staging / "tokenizer"))
    accelerator.wait_for_everyone()
    final = commit(staging, state.header(), cfg.keep_checkpoints) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    return final


MODEL_DIR = "model"  # the final save_pretrained directory inside the run directory


def save_final_model(
    run_dir: Path, cfg: TrainConfig, accelerator: Accelerator, model: nn.Module, summary: dict
) -> Path:
    """The trained model as a save_pretrained directory (written aside, then renamed into place),
    with the run's config and its summary (``training.json``: steps, examples, time, learning curve)."""
    from .config import to_yaml
    from .summary import write_summary

    final = run_dir / MODEL_DIR
    if accelerator.is_main_process:
        tmp = run_dir / f".tmp-{MODEL_DIR}"
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.unwrap_model(model).save_pretrained(str(tmp))
        (tmp / "train_config.yaml").write_text(to_yaml(cfg.to_dict()), encoding="utf-8")
        write_summary(tmp, summary)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    accelerator.wait_for_everyone()
    return final
