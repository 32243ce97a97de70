"""AdamW over the trainable parameters, and the warm-up + cosine learning-rate schedule.

Weight decay applies to matrices only (nanoGPT's ``configure_optimizers``): biases, norm
gains and token tables are not decayed. The token tables are the LLM's input embedding and its
output head with everything inside them (peft's trainable tag-token rows too): a tag's row in an
untied head is the other half of its embedding row, and both halves are treated alike.

The schedule is linear warm-up to the peak, then cosine (Loshchilov & Hutter, "SGDR", ICLR 2017) or linear decay to ``min_lr_ratio`` x peak.
"""

from __future__ import annotations

import math
from functools import partial

import torch

from ..model.speed import fused_adamw_supported
from .config import TrainConfig


def token_table_parameters(model: torch.nn.Module) -> set[int]:
    """``id``s of the parameters in every causal LM's input embedding and output head (module tree walk)."""
    found: set[int] = set()
    for module in model.modules():
        get_head = getattr(module, "get_output_embeddings", None)
        head = get_head() if callable(get_head) else None
        if head is None:  # not a language model with a head (e.g. the Whisper encoder)
            continue
        for table in (module.get_input_embeddings(), head):  # type: ignore[operator]  # a transformers model here
            found.update(id(p) for p in table.parameters())
    return found


def parameter_groups(model: torch.nn.Module, names: list[str], weight_decay: float) -> list[dict]:
    """Two AdamW groups over the named trainable parameters: decayed matrices, the rest."""
    params = dict(model.named_parameters())
    tables = token_table_parameters(model)
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name in names:
        p = params[name]
        # Token tables are 2-D but are lookups, not maps: decaying them shrinks rare tokens.
        is_matrix = p.ndim >= 2 and id(p) not in tables and "embed" not in name and "wte" not in name
        (decay if is_matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, names: list[str], cfg: TrainConfig) -> torch.optim.Optimizer:
    if not names:
        raise ValueError(
            "nothing trains: the trainable set is empty (check --train-projector/--train-llm/"
            "--train-encoder and the preset)"
        )
    groups = parameter_groups(model, names, cfg.weight_decay)
    fused = fused_adamw_supported([p for g in groups for p in g["params"]])  # one kernel per step
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, fused=fused)


def warmup_steps(cfg: TrainConfig, max_steps: int) -> int:
    """``--warmup`` as a step count: a fraction of the run below 1, a number of steps from 1."""
    return int(cfg.warmup) if cfg.warmup >= 1 else round(cfg.warmup * max_steps)


def lr_factor(step: int, max_steps: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """The learning rate at optimizer step ``step`` (0-based) as a fraction of the peak."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * decay


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    fn = partial(
        lr_factor,
        max_steps=max_steps,
        warmup=warmup_steps(cfg, max_steps),
        schedule=cfg.schedule,
        min_ratio=cfg.min_lr_ratio,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
