"""What trains: applied once, from ``ModelConfig.trainable``, when a model is built or loaded.

=================  =============================================================================
``encoder``        ``frozen`` (default: no gradients, kept in eval mode), ``full`` (all weights
                   but Whisper's fixed sinusoidal positions), ``lora`` (peft LoRA on
                   ``encoder_lora_targets``)
``projector``      trained or not
``towers[i]``      each second audio tower (``TowerConfig.train``): ``frozen`` (default) or
                   ``lora`` (peft LoRA on its ``lora_targets``, rank and scale from ``trainable``)
``llm``            ``full``; ``lora`` (peft LoRA on ``lora_targets``); ``frozen``; ``qlora``
                   (LoRA on an LLM whose Linear layers, all but the output head, are held
                   frozen in 4-bit NF4 through bitsandbytes: :func:`qaudio.model.quantize.hold_in_4bit`)
=================  =============================================================================

**The tag-token rows.** A pretrained LLM has never seen qaudio's 3301 tag tokens: their
embedding rows (and output-head rows) are new, and they must learn even when the rest of the
LLM is frozen or LoRA-tuned, or the model could never read a task tag or write a time token.
With ``llm`` ``frozen``, ``lora`` or ``qlora`` they train through peft's *trainable tokens*
(``TrainableTokensConfig`` for a frozen LLM, ``LoraConfig(trainable_token_indices=...)`` with
LoRA): the rows of the tag ids live in a small trainable (n_tags, H) tensor that replaces those
rows of the frozen matrix in the forward pass; an untied output head gets its own; a tied one
shares it. The rest of the matrix has no gradient, so weight decay cannot touch it and
the optimizer holds state for n_tags rows only (not 150k for Qwen). With ``full`` they
train with everything else.

A frozen part gets ``requires_grad=False``, so it never reaches the optimizer and DDP never
waits for its gradient (OFFLINE.md: "Expected to have finished reduction").

Saving: :func:`plain_state_dict` gives the weights under the plain model's names, without
adapters and in float (4-bit or int8 layers dequantized: loading quantizes them again to the
same codes, see :mod:`qaudio.model.quantize`); :func:`save_adapter` writes the adapters alone in peft's format (the
``adapter_model.safetensors`` + ``adapter_config.json`` pair that ``PeftModel.from_pretrained``
reads); :func:`merged_state_dict` gives the weights with adapters folded in.

References: Hu et al., "LoRA" (2021); peft ``tuners/lora`` and ``tuners/trainable_tokens``;
torchtune's habit of declaring what trains in one place.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from peft import LoraConfig, PeftModel, TrainableTokensConfig, get_peft_model
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from ..config import TowerConfig, TrainableConfig
from ..tags import all_special_tokens

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .audio_lm import AudioLM
from .quantize import dequantize_, dequantized_copy
from .weights import load_tensors, save_tensors

ADAPTER_WEIGHTS = "adapter_model.safetensors"  # peft's file name (its config is adapter_config.json)


def unwrap(module: nn.Module) -> Any:
    """The transformers model inside a peft wrapper (adapters stay injected in its layers).

    Typed Any: callers use the transformers model's own attributes (config, get_input_embeddings)."""
    return module.get_base_model() if isinstance(module, PeftModel) else module


def _module_name(root: nn.Module, target: nn.Module) -> str:
    for name, module in root.named_modules():
        if module is target:
            return name
    raise ValueError(f"{type(target).__name__} is not a submodule of {type(root).__name__}")


# ---- The audio tower ------------------------------------------------------------------------


def _freeze(module: nn.Module, trainable: TrainableConfig) -> nn.Module:
    return module.requires_grad_(False)


def _encoder_full(encoder: nn.Module, trainable: TrainableConfig) -> nn.Module:
    encoder.requires_grad_(True)
    encoder.embed_positions.requires_grad_(False)  # Whisper's sinusoids are fixed, in training too
    return encoder


def _encoder_lora(encoder: nn.Module, trainable: TrainableConfig) -> nn.Module:
    config = LoraConfig(
        r=trainable.lora_r,
        lora_alpha=trainable.lora_alpha,
        lora_dropout=trainable.lora_dropout,
        target_modules=list(trainable.encoder_lora_targets),
    )
    return get_peft_model(encoder, config)


ENCODER_TRAINING: dict[str, Callable[[nn.Module, TrainableConfig], nn.Module]] = {
    "frozen": _freeze,
    "full": _encoder_full,
    "lora": _encoder_lora,
}


def _tower_lora(tower: nn.Module, config: TowerConfig, trainable: TrainableConfig) -> nn.Module:
    lora = LoraConfig(
        r=trainable.lora_r,
        lora_alpha=trainable.lora_alpha,
        lora_dropout=trainable.lora_dropout,
        target_modules=list(config.lora_targets),
    )
    return get_peft_model(tower, lora)


TOWER_TRAINING: dict[str, Callable[[nn.Module, TowerConfig, TrainableConfig], nn.Module]] = {
    "frozen": lambda tower, config, trainable: tower.requires_grad_(False),
    "lora": _tower_lora,
}


# ---- The language model ---------------------------------------------------------------------


def tag_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of every qaudio tag, time and audio token: the rows a pretrained LLM has never trained.

    Tokens the tokenizer lacks are left out (an imported Qwen2-Audio has the audio tokens only)."""
    ids = cast("list[int | None]", tokenizer.convert_tokens_to_ids(all_special_tokens()))  # a list in, a list out
    return sorted({i for i in ids if i is not None and i != tokenizer.unk_token_id})


def _token_row_targets(llm: Any, token_ids: list[int]) -> dict[str, list[int]]:
    """{module name: ids} for the input embedding, and for the output head unless it is tied to it."""
    targets = {_module_name(llm, llm.get_input_embeddings()): token_ids}
    head = llm.get_output_embeddings()
    if head.weight is not llm.get_input_embeddings().weight:
        targets[_module_name(llm, head)] = token_ids
    return targets


def _llm_full(llm: nn.Module, trainable: TrainableConfig, token_ids: list[int]) -> nn.Module:
    return llm.requires_grad_(True)


def _llm_frozen(llm: nn.Module, trainable: TrainableConfig, token_ids: list[int]) -> nn.Module:
    targets = _token_row_targets(llm, token_ids)
    return get_peft_model(llm, TrainableTokensConfig(token_indices=token_ids, target_modules=list(targets)))


def _llm_lora(llm: nn.Module, trainable: TrainableConfig, token_ids: list[int]) -> nn.Module:
    config = LoraConfig(
        r=trainable.lora_r,
        lora_alpha=trainable.lora_alpha,
        lora_dropout=trainable.lora_dropout,
        target_modules=list(trainable.lora_targets),
        trainable_token_indices=_token_row_targets(llm, token_ids),
    )
    return get_peft_model(llm, config)


def _llm_qlora(llm: nn.Module, trainable: TrainableConfig, token_ids: list[int]) -> nn.Module:
    from .quantize import hold_in_4bit

    # The LoRA adapters and the tag rows stay in the model's float dtype; only the frozen base is 4-bit.
    return _llm_lora(hold_in_4bit(llm), trainable, token_ids)


LLM_TRAINING: dict[str, Callable[[nn.Module, TrainableConfig, list[int]], nn.Module]] = {
    "frozen": _llm_frozen,
    "full": _llm_full,
    "lora": _llm_lora,
    "qlora": _llm_qlora,
}


def apply_trainable(model: AudioLM) -> None:
    """Freeze, unfreeze or wrap ``model``'s parts (an AudioLM) as ``model.config.trainable`` says."""
    trainable = model.config.trainable
    for part in (model.audio_tower, model.language_model, *model.towers):
        if isinstance(part, PeftModel):
            raise ValueError("apply_trainable runs once per model; this one already has adapters")
    model.audio_tower = ENCODER_TRAINING[trainable.encoder](model.audio_tower, trainable)
    for i, tower_config in enumerate(model.config.towers):
        model.towers[i] = TOWER_TRAINING[tower_config.train](model.towers[i], tower_config, trainable)
    model.projector.requires_grad_(trainable.projector)
    tags = tag_token_ids(model.processor.tokenizer)
    model.language_model = LLM_TRAINING[trainable.llm](model.language_model, trainable, tags)


# ---- Saving and loading ---------------------------------------------------------------------


def plain_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The weights without adapters, under the names of the plain transformers model.

    peft renames wrapped layers (``q_proj.base_layer.weight``, ``embed_tokens.token_adapter...``);
    its own ``unload`` restores the plain modules, so a copy is unloaded rather than the names
    rewritten by hand. ``module`` keeps its adapters.
    """
    if not isinstance(module, PeftModel):
        return dequantized_copy(module).state_dict()
    return dequantize_(copy.deepcopy(module).unload()).state_dict()


def merged_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The weights with adapters folded in (a copy is merged; ``module`` keeps its adapters)."""
    if not isinstance(module, PeftModel):
        return dequantized_copy(module).state_dict()
    # A 4-bit base (qlora) is merged by peft's 4-bit layer: dequantized, summed, quantized again.
    return dequantize_(copy.deepcopy(module).merge_and_unload()).state_dict()


def save_adapter(module: nn.Module, directory: Path) -> bool:
    """Write ``module``'s adapters in peft's format; False (nothing written) when it has none."""
    if not isinstance(module, PeftModel):
        return False
    directory.mkdir(parents=True, exist_ok=True)
    # With tied embeddings, peft gives the embedding's and the head's trainable-token rows as one
    # shared delta under two names: stored once, both names come back on loading.
    save_tensors(get_peft_model_state_dict(module, save_embedding_layers=False), directory / ADAPTER_WEIGHTS)
    module.peft_config["default"].save_pretrained(str(directory))
    return True


def load_adapter(module: nn.Module, directory: Path) -> None:
    """Load adapters saved by :func:`save_adapter` into ``module``, whose adapters ``apply_trainable`` made."""
    if not isinstance(module, PeftModel):
        raise ValueError(
            f"{directory} holds adapters, but the model config trains this part without any; "
            "the checkpoint's config.json and its adapters disagree"
        )
    state = load_tensors(directory / ADAPTER_WEIGHTS)
    result: Any = set_peft_model_state_dict(module, state)  # load_state_dict's keys; peft's function is unannotated
    if result.unexpected_keys:
        raise ValueError(f"{directory}: adapter weights that fit no adapter of the model: {result.unexpected_keys[:5]}")
