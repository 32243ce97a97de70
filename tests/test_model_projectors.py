"""Projectors: outputs independent of padding and batch, gradients everywhere, output scale."""

import pytest
import torch

from qaudio.config import ProjectorConfig
from qaudio.model import PROJECTORS
from qaudio.model.projectors import build_projector


def _projector(name: str, embed_rms: float = 1.0):
    torch.manual_seed(0)
    config = ProjectorConfig(name=name, stack=3, hidden=32, num_queries=2, qformer_layers=2, qformer_heads=4)
    return build_projector(config, in_dim=16, out_dim=24, embed_rms=embed_rms).eval()


@pytest.mark.parametrize("name", sorted(PROJECTORS))
def test_outputs_do_not_depend_on_padding_or_batch(name):
    projector = _projector(name)
    lengths = torch.tensor([7, 2, 11])
    states = torch.randn(3, 11, 16)
    noisy = states.clone()
    for i, n in enumerate(lengths):
        noisy[i, n:] = 1e3  # garbage past the end must not leak into real outputs
    out, counts = projector(states, lengths)
    out_noisy, _ = projector(noisy, lengths)
    for i, (n, c) in enumerate(zip(lengths, counts, strict=True)):
        alone, alone_count = projector(states[i : i + 1, :n], lengths[i : i + 1])
        assert int(alone_count) == int(c)
        torch.testing.assert_close(out[i, :c], alone[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out_noisy[i, :c], out[i, :c], atol=1e-5, rtol=1e-5)
        assert torch.isfinite(out[i]).all()  # padding rows too (the Q-Former must not produce NaN)


@pytest.mark.parametrize("name", sorted(PROJECTORS))
def test_every_parameter_gets_a_gradient(name):
    projector = _projector(name).train()
    lengths = torch.tensor([9, 4])
    out, counts = projector(torch.randn(2, 9, 16), lengths)
    valid = torch.arange(out.shape[1]) < counts[:, None]
    out[valid].pow(2).sum().backward()
    missing = [n for n, p in projector.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing  # DDP needs every trainable parameter to get a gradient


@pytest.mark.parametrize("name", ["mlp", "conv", "qformer"])
def test_output_norm_starts_at_the_llm_embedding_scale(name):
    projector = _projector(name, embed_rms=0.02)
    out, _counts = projector(torch.randn(2, 12, 16) * 5, torch.tensor([12, 12]))
    rms = out.pow(2).mean(dim=-1).sqrt()  # (B, N)
    torch.testing.assert_close(rms, torch.full_like(rms, 0.02), atol=1e-4, rtol=1e-3)


def test_outputs_follow_time():
    """Stacking keeps frame order: output j of the mlp depends only on frames [j*k, (j+1)*k)."""
    projector = _projector("mlp")
    states = torch.randn(1, 9, 16)
    changed = states.clone()
    changed[0, 4] += 1.0  # frame 4 lies in group 1 of stack 3
    out, _ = projector(states, torch.tensor([9]))
    out2, _ = projector(changed, torch.tensor([9]))
    differs = (out - out2).abs().amax(dim=-1)[0] > 1e-6
    assert differs.tolist() == [False, True, False]
