"""Quantized inference and the 4-bit frozen LLM of QLoRA, through maintained libraries.

``quantize(model, "int8" | "int4", backend=None, parts=("llm",))`` replaces the ``nn.Linear``
layers of the chosen parts of an AudioLM, in place, with a library's quantized layers:

==============  ==============  ==================================================================
mode            backend         what runs
==============  ==============  ==================================================================
``int8``        ``torch``       (default on CPU) PyTorch's dynamic quantization
                                (``torch.ao.quantization.quantize_dynamic``, fbgemm kernels on
                                x86): int8 weights per output channel, activations quantized per
                                batch at run time, int8 x int8 matrix products. CPU only.
``int8``        ``torchao``     (default on CUDA) torchao ``Int8WeightOnlyConfig``: int8 weights,
                                float activations. On CPU it runs unfused in eager mode (measured
                                slower than float32 here), so it is for GPUs or ``torch.compile``.
``int4``        ``bitsandbytes`` (default) NF4 weights in 64-value blocks (``bnb.nn.Linear4bit``;
                                Dettmers et al., "QLoRA", 2023), dequantized per matrix product.
                                CPU and CUDA. Halves int8's weight memory; on CPU it is slower
                                than float32 (it dequantizes each layer on every call).
``int4``        ``torchao``     torchao ``Int4WeightOnlyConfig`` (tinygemm-style kernels): CUDA
                                only in torchao 0.18, refused on CPU with the reason.
==============  ==============  ==================================================================

The LLM's output head is kept in float: it is often tied to the input embedding (quantizing
it would untie and duplicate the matrix), and it is the layer most sensitive to rounding.
Adapters (LoRA, trainable tag rows) are merged into the weights before quantizing, so a
quantized model is for inference.

**Saving.** ``save_pretrained`` on a quantized model writes the weights as the float values
the quantized layers compute with (dequantized) and records the quantization in config.json;
``from_pretrained`` quantizes them again. Every scheme here maps the largest weight of a
channel or block to the largest code exactly (the int8 range is the symmetric [-127, 127]), so
the dequantized weights quantize back to the same codes and the reloaded model gives the same
logits. Why not the integer tensors themselves: torch's dynamic int8 layers hold fbgemm-packed
weights, opaque objects that safetensors cannot store, and one float layout keeps every qaudio
reader (evaluate, export, the peers) working on any saved model. The cost: a quantized model
takes float32 space on disk; the memory saving is in RAM, after loading.

**QLoRA.** :func:`hold_in_4bit` turns the frozen LLM's layers into NF4 ``Linear4bit`` before
peft adds LoRA (``qaudio.model.trainable``), marking the model ``is_loaded_in_4bit`` as
transformers does, which is how peft picks its 4-bit LoRA layer (the one that can merge).

References: Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference" (2018); PyTorch ``torch.ao.quantization``; torchao
``quantize_``; bitsandbytes ``Linear4bit`` / ``Params4bit``; Dettmers et al., "QLoRA" (2023).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from .audio_lm import AudioLM

MODES = ("int8", "int4")
PARTS = ("llm", "encoder", "projector")
PART_ATTRIBUTES = {"llm": "language_model", "encoder": "audio_tower", "projector": "projector"}
NF4_BLOCK = 64  # values per NF4 block: bitsandbytes' default, the block size of the QLoRA paper
EXTRAS = {"bitsandbytes": "compress", "torchao": "compress-gpu"}  # package -> the qaudio extra that installs it


@dataclass(frozen=True)
class Quantization:
    """How a model's Linear layers are quantized: recorded in config.json, reapplied on loading."""

    mode: str  # int8 | int4
    backend: str  # torch | torchao | bitsandbytes (see the module docstring)
    parts: tuple[str, ...] = ("llm",)  # model parts quantized: llm, encoder, projector

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"quantization mode {self.mode!r} is not supported; expected one of: {', '.join(MODES)} "
                "(float16/bfloat16 are dtypes: pass dtype= instead)"
            )
        known = sorted({backend for mode, backend in BACKENDS})
        if (self.mode, self.backend) not in BACKENDS:
            able = ", ".join(b for m, b in BACKENDS if m == self.mode)
            raise ValueError(
                f"backend {self.backend!r} does not do {self.mode}; {self.mode} runs through {able} "
                f"(known backends: {', '.join(known)})"
            )
        parts = tuple(self.parts)
        if not parts or any(p not in PARTS for p in parts):
            raise ValueError(f"quantized parts {parts!r}: expected a non-empty list from {', '.join(PARTS)}")
        object.__setattr__(self, "parts", parts)

    def to_dict(self) -> dict:
        return {**asdict(self), "parts": list(self.parts)}

    @classmethod
    def from_dict(cls, data: dict) -> Quantization:
        return cls(mode=data["mode"], backend=data["backend"], parts=tuple(data["parts"]))


# ---- The layers a mode replaces ---------------------------------------------------------------


def _linear_names(module: nn.Module, keep: nn.Module | None) -> list[str]:
    """Names of the plain ``nn.Linear`` layers of ``module``, except ``keep`` (the LLM's output head)."""
    return [name for name, m in module.named_modules() if type(m) is nn.Linear and m is not keep]


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def _require(package: str, purpose: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise ImportError(
            f"{purpose} needs the {package} package, which is not installed; pip install 'qaudio[{EXTRAS[package]}]'"
        ) from None


def _int8_torch(module: nn.Module, names: list[str]) -> None:
    if next(module.parameters()).device.type != "cpu":
        raise ValueError(
            "int8 with backend 'torch' (PyTorch dynamic quantization) runs on CPU only; on a GPU use "
            "backend='torchao' (int8 weight-only)"
        )
    from torch.ao.quantization import QConfig, default_dynamic_quant_observer, quantize_dynamic
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    # [-127, 127]: the largest weight of a row is code 127 exactly, so a dequantized copy
    # quantizes back to the same codes (what saving relies on; the default range is [-128, 127]).
    weight = PerChannelMinMaxObserver.with_args(
        dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-127, quant_max=127
    )
    qconfig = QConfig(activation=default_dynamic_quant_observer, weight=weight)
    quantize_dynamic(module, dict.fromkeys(names, qconfig), inplace=True)


def _torchao_config(mode: str) -> Any:
    _require("torchao", f"{mode} with backend 'torchao'")
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig

    return Int8WeightOnlyConfig() if mode == "int8" else Int4WeightOnlyConfig(group_size=128)


def _torchao(mode: str) -> Callable[[nn.Module, list[str]], None]:
    def apply(module: nn.Module, names: list[str]) -> None:
        if mode == "int4" and next(module.parameters()).device.type != "cuda":
            raise ValueError(
                "int4 with backend 'torchao' needs a CUDA GPU: torchao's int4 weight layouts are CUDA "
                "kernels (on CPU its 'plain' layout needs the CUDA-only mslk package and 'plain_int32' "
                "refuses the device); on CPU use backend='bitsandbytes' (NF4)"
            )
        from torchao.quantization import quantize_

        wanted = set(names)
        quantize_(module, _torchao_config(mode), filter_fn=lambda m, fqn: fqn in wanted)

    return apply


def _nf4_linear(linear: nn.Linear) -> nn.Module:
    bnb = _require("bitsandbytes", "int4 (NF4) quantization")
    layer = bnb.nn.Linear4bit(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        compute_dtype=linear.weight.dtype,
        compress_statistics=False,
        quant_type="nf4",
    )
    # compress_statistics=False keeps each block's scale in float32 (QLoRA's "double quantization"
    # would round it to 8 bits and break the exact dequantize -> quantize round trip saving needs).
    layer.weight = bnb.nn.Params4bit(
        linear.weight.data, requires_grad=False, quant_type="nf4", blocksize=NF4_BLOCK, compress_statistics=False
    )
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.data, requires_grad=False)
    # On a CPU with AVX512-BF16 (AMD Zen 4, recent Xeons), bitsandbytes (>= 0.49) repacks a layer at its
    # first inference call for a fused kernel: the block scales become bf16 and the codes change layout.
    # That rounding is not undone on saving (its inverse quantizes the scales again), and the layout is
    # not what dequantize_4bit reads, so a model saved after generating no longer gave the logits it
    # gave before (measured on Zen 4: up to 0.86 apart after QLoRA). The layers keep the layout every
    # machine computes with: the same numbers everywhere and exact round trips. The fused kernel was no
    # faster on the demo model's LLM (docs/compressing.md); on large LLMs its speed is what this costs.
    layer.support_avx512bf16_for_cpu = False
    return layer.to(linear.weight.device)  # bitsandbytes quantizes when the weight is moved to its device


def _int4_bitsandbytes(module: nn.Module, names: list[str]) -> None:
    for name in names:
        _replace(module, name, _nf4_linear(cast(nn.Linear, module.get_submodule(name))))  # names are Linear layers


BACKENDS: dict[tuple[str, str], Callable[[nn.Module, list[str]], None]] = {
    ("int8", "torch"): _int8_torch,
    ("int8", "torchao"): _torchao("int8"),
    ("int4", "bitsandbytes"): _int4_bitsandbytes,
    ("int4", "torchao"): _torchao("int4"),
}


def default_backend(mode: str, device: torch.device | str = "cpu") -> str:
    """The backend a mode uses unless one is named: the fastest one measured for the device."""
    on_gpu = torch.device(device).type == "cuda"
    return {"int8": "torchao" if on_gpu else "torch", "int4": "bitsandbytes"}.get(mode, "")


# ---- Dequantizing (saving, and quantizing a quantized model again) ------------------------------


def _dequantized_weight(module: Any) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight, bias) in float for a quantized linear layer of any backend here, None for other modules.

    ``module`` is Any: the layers of the other backends carry attributes nn.Module does not declare."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    if isinstance(module, DynamicInt8Linear):
        return module.weight().dequantize(), module.bias()
    if type(module).__name__ == "Linear4bit" and type(module).__module__.startswith("bitsandbytes"):
        from bitsandbytes.functional import dequantize_4bit

        return dequantize_4bit(module.weight.data, module.weight.quant_state), module.bias
    if type(module) is nn.Linear and type(module.weight) is not nn.Parameter and hasattr(module.weight, "dequantize"):
        return module.weight.dequantize(), module.bias  # a torchao tensor subclass
    return None


def has_quantized_layers(module: nn.Module) -> bool:
    return any(_dequantized_weight(m) is not None for m in module.modules())


def dequantize_(module: nn.Module) -> nn.Module:
    """Replace every quantized linear layer of ``module`` with a float ``nn.Linear`` (in place)."""
    found = [(name, wb) for name, m in module.named_modules() if name and (wb := _dequantized_weight(m)) is not None]
    for name, (weight, bias) in found:
        plain = nn.Linear(
            weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype
        )
        with torch.no_grad():
            plain.weight.copy_(weight)
            if bias is not None:
                plain.bias.copy_(bias)
        plain.requires_grad_(False)
        _replace(module, name, plain)
    if getattr(module, "is_loaded_in_4bit", False):  # the flag transformers and peft read
        setattr(module, "is_loaded_in_4bit", False)  # noqa: B010 (nn.Module types its attributes as tensors)
    return module


def dequantized_copy(module: nn.Module) -> nn.Module:
    """``module`` itself when nothing in it is quantized, else a float copy (``module`` unchanged)."""
    return dequantize_(copy.deepcopy(module)) if has_quantized_layers(module) else module


# ---- Quantizing a model ------------------------------------------------------------------------


def _plain_part(model: AudioLM, part: str) -> Any:
    """The part with adapters merged into its weights (peft's merge) and its layers in float."""
    from peft import PeftModel

    module = getattr(model, PART_ATTRIBUTES[part])
    if isinstance(module, PeftModel):
        module = module.merge_and_unload()
    return dequantize_(module)


def quantize(
    model: AudioLM, mode: str, backend: str | None = None, parts: tuple[str, ...] | list[str] = ("llm",)
) -> AudioLM:
    """Quantize ``model`` (an AudioLM) in place for inference, record how, and return it.

    ``backend``: ``None`` picks :func:`default_backend` for the model's device. ``parts``:
    ``llm`` (its Linear layers but the output head), ``encoder`` (Whisper's Linear layers; its
    two convolutions stay float), ``projector``.
    """
    recipe = Quantization(mode=mode, backend=backend or default_backend(mode, model.device), parts=tuple(parts))
    model.eval()
    for part in recipe.parts:
        module = _plain_part(model, part)
        head = module.get_output_embeddings() if part == "llm" else None
        names = _linear_names(module, keep=head)
        if not names:
            raise ValueError(f"the {part} has no nn.Linear layer to quantize")
        BACKENDS[(recipe.mode, recipe.backend)](module, names)
        module.requires_grad_(False)
        setattr(model, PART_ATTRIBUTES[part], module)
    model.quantization = recipe
    return model


# ---- QLoRA's frozen base -----------------------------------------------------------------------


def hold_in_4bit(llm: Any) -> nn.Module:
    """The LLM's Linear layers (not the output head) as frozen NF4 ``Linear4bit``, in place."""
    names = _linear_names(llm, keep=llm.get_output_embeddings())
    _int4_bitsandbytes(llm, names)
    llm.is_loaded_in_4bit = True  # as transformers marks a 4-bit model: peft then wraps with its 4-bit LoRA layer
    return llm


def weight_bytes(module: nn.Module) -> int:
    """Bytes the module's weights take in memory: parameters and buffers as stored (packed int4,
    int8, tensor subclasses' inner tensors), torch's packed int8 weights and their scales."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    seen: set[int] = set()

    def size(tensor: torch.Tensor | None) -> int:
        if tensor is None or id(tensor) in seen:
            return 0
        seen.add(id(tensor))
        if type(tensor) not in (torch.Tensor, nn.Parameter) and hasattr(tensor, "__tensor_flatten__"):
            inner, _ = tensor.__tensor_flatten__()  # a torchao tensor subclass: what it holds
            return sum(size(getattr(tensor, name)) for name in inner)
        return tensor.numel() * tensor.element_size()

    total = 0
    for m in module.modules():
        if isinstance(m, DynamicInt8Linear):
            weight = m.weight()  # int8 codes, a float64 scale and an int64 zero point per row
            total += weight.numel() + weight.q_per_channel_scales().numel() * 16 + size(m.bias())
        state = getattr(getattr(m, "weight", None), "quant_state", None)
        if state is not None:  # bitsandbytes: each block's scale lives beside the packed weight
            total += size(state.absmax)
    return total + sum(size(p) for p in module.parameters()) + sum(size(b) for b in module.buffers())
