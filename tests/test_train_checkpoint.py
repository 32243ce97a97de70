"""Checkpoints through accelerate's save_state/load_state: what is written, what comes back."""

import json

import pytest
import torch
from safetensors.torch import load_file

from qaudio.training import checkpoint as ckpt
from qaudio.training.bad_data import BadDataLog, BadItem
from qaudio.training.losses import LossMeter
from qaudio.training.state import TrainState


def _parts(seed: int):
    """A model with a frozen first layer (the frozen encoder's stand-in), its optimizer, schedule, state."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[0].requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    return model, optimizer, scheduler, TrainState(BadDataLog(), LossMeter(["asr"]))


def test_state_round_trip_keeps_trainable_weights_only_and_the_scaler(tmp_path):
    from accelerate import Accelerator

    trainable = ["1.weight", "1.bias"]
    accelerator = Accelerator(cpu=True)
    # accelerate makes a GradScaler for fp16 on GPUs only; this one stands for it on a CPU machine.
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    model, optimizer, scheduler, state = _parts(0)
    model, optimizer = accelerator.prepare(model, optimizer)
    ckpt.register(accelerator, trainable, scheduler, state)
    accelerator.backward(model(torch.randn(5, 3)).sum())
    optimizer.step()
    scheduler.step()
    accelerator.scaler.update(512.0)
    state.step, state.position, state.max_steps = 1, 8, 10
    state.bad.record(BadItem("missing file", "x1", "/a/x1.wav", "audio file not found", "test"))
    staging = ckpt.staging_dir(tmp_path, state.step)
    accelerator.save_state(str(staging))
    final = ckpt.commit(staging, state.header(), keep=2)
    saved = load_file(str(final / ckpt.TRAINABLE_FILE))
    assert sorted(saved) == sorted(trainable)  # the frozen layer is rebuilt, never written
    assert (final / "scaler.pt").is_file() and (final / "random_states_0.pkl").is_file()
    assert json.loads((final / ckpt.STATE_FILE).read_text())["format"] == ckpt.FORMAT
    after = torch.rand(3)

    accelerator = Accelerator(cpu=True)
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0)
    fresh, optimizer2, scheduler2, state2 = _parts(1)
    frozen_before = fresh[0].weight.detach().clone()
    fresh, optimizer2 = accelerator.prepare(fresh, optimizer2)
    ckpt.register(accelerator, trainable, scheduler2, state2)
    assert ckpt.read_state(final)["step"] == 1
    accelerator.load_state(str(final))
    assert torch.equal(fresh[1].weight, model[1].weight) and torch.equal(fresh[0].weight, frozen_before)
    assert scheduler2.last_epoch == 1 and optimizer2.state_dict()["state"]
    assert (state2.step, state2.position, state2.max_steps) == (1, 8, 10) and state2.bad.skipped == {
        "x1": "missing file"
    }
    assert accelerator.scaler.get_scale() == 512.0
    assert torch.equal(torch.rand(3), after)  # the RNG continues where the saving process was


def test_a_checkpoint_of_the_earlier_format_is_refused_with_what_to_do(tmp_path):
    old = tmp_path / "checkpoints" / "step-00000004"
    old.mkdir(parents=True)
    (old / ckpt.STATE_FILE).write_text(json.dumps({"step": 4, "position": 8, "world_size": 1}))
    (old / "trainable.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="qaudio 0.1.0.*start a new one"):
        ckpt.read_state(old)
