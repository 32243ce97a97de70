"""Saving and loading an AudioLM directory; a hub id is downloaded first, then read the same way.

A checkpoint directory holds

=============================  ===============================================================
``config.json``                ``{"format": "qaudio", "qaudio_version", "model": <the resolved
                               ModelConfig>, "audio_tower": <WhisperConfig>, "language_model":
                               <the LLM's transformers config>, "adapters": [parts]}``
``model.safetensors``          every weight, prefixed ``audio_tower.``, ``projector.``,
                               ``language_model.``, under the unwrapped transformers names
                               (tied tensors stored once; the aliases are in the metadata)
  its ``quantization``         ``{"mode", "backend", "parts"}`` of a quantized model (else
                               null): its weights are stored dequantized, quantized on loading
``adapters/<part>/``           peft adapters of ``audio_tower`` / ``language_model`` (LoRA and
                               trainable tag-token rows) as ``adapter_model.safetensors`` +
                               ``adapter_config.json``, unless saved with ``merge_lora``
tokenizer files                ``tokenizer.json``, ``tokenizer_config.json``
``preprocessor_config.json``   the ``WhisperFeatureExtractor``
second towers (if any)         weights under ``towers.<i>.``, their transformers configs in
                               ``config.json``'s ``"towers"``, adapters in
                               ``adapters/towers.<i>/``, feature extractors in ``towers/<i>/``
=============================  ===============================================================

No source code is copied: the classes come from the installed qaudio and transformers, and
the architecture from the saved configs. Loading builds every part from its config, loads
the weights strictly (a missing or unexpected key is an error), applies ``trainable`` as at
build time, then loads the adapters; with merged adapters, fresh ones start at zero (LoRA's B)
or at the merged rows (trainable tokens), so the logits are the same either way.

Reference: the Hugging Face ``save_pretrained`` layout (``config.json`` + ``model.safetensors``)
and safetensors' handling of shared tensors (``safetensors.torch.save_model``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import CONFIG_MAPPING, AutoModelForCausalLM, AutoTokenizer, WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from .. import __version__
from ..config import CHECKPOINT_CONFIG, ModelConfig
from ..dtypes import torch_dtype
from .projectors import build_projector
from .trainable import apply_trainable, load_adapter, merged_state_dict, plain_state_dict, save_adapter, unwrap
from .weights import load_tensors, save_tensors

if TYPE_CHECKING:
    from .audio_lm import AudioLM

FORMAT = "qaudio"
WEIGHTS = "model.safetensors"
ADAPTERS = "adapters"
PARTS = ("audio_tower", "projector", "language_model")
ADAPTED_PARTS = ("audio_tower", "language_model")


def save_checkpoint(model: AudioLM, directory: Path, merge_lora: bool = False) -> Path:
    """Write ``model`` (an AudioLM) to ``directory``; see the module docstring for the layout."""
    directory.mkdir(parents=True, exist_ok=True)
    state_of = merged_state_dict if merge_lora else plain_state_dict
    parts = [*PARTS, *_tower_parts(model)]
    state = {f"{part}.{k}": v for part in parts for k, v in state_of(model.get_submodule(part)).items()}
    save_tensors(state, directory / WEIGHTS)
    shutil.rmtree(directory / ADAPTERS, ignore_errors=True)  # adapters of an earlier save would not match
    adapted = [*ADAPTED_PARTS, *_tower_parts(model)]
    adapters = (
        [] if merge_lora else [p for p in adapted if save_adapter(model.get_submodule(p), directory / ADAPTERS / p)]
    )
    model.processor.save_pretrained(directory)  # tokenizer files and preprocessor_config.json
    meta = {
        "format": FORMAT,
        "qaudio_version": __version__,
        "model": model.config.to_dict(),
        "audio_tower": unwrap(model.audio_tower).config.to_dict(),
        "language_model": unwrap(model.language_model).config.to_dict(),
        "adapters": adapters,  # parts whose adapters lie under adapters/<part>/
        "merged_adapters": [
            p for p in adapted if merge_lora and model.get_submodule(p) is not unwrap(model.get_submodule(p))
        ],
        # how the (dequantized) weights are quantized again on loading; see qaudio.model.quantize
        "quantization": model.quantization.to_dict() if model.quantization else None,
    }
    if len(model.towers):  # only then: a Whisper-only checkpoint's config.json is as before
        meta["towers"] = [unwrap(t).config.to_dict() for t in model.towers]
    # config.json last: a directory with it is a complete checkpoint.
    (directory / CHECKPOINT_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def _tower_parts(model: AudioLM) -> list[str]:
    """``towers.0``, ``towers.1``, ...: the second audio towers, saved as parts of their own."""
    return [f"towers.{i}" for i in range(len(model.towers))]


def local_directory(path_or_hub_id: str | Path) -> Path:
    """A saved model's local directory: the path itself, or a hub id's snapshot (downloaded once,
    then from the hub's cache); the one place that tells the two apart, for every loader."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(path_or_hub_id).count("/") != 1:
        raise FileNotFoundError(f"{path_or_hub_id} is neither a saved qaudio model directory nor a hub id (owner/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(path_or_hub_id)))
    except Exception as error:  # offline, unknown repo, no access: one message that says what to do
        raise FileNotFoundError(
            f"{path_or_hub_id} is not a local directory, and downloading it from the Hugging Face "
            f"hub failed ({type(error).__name__}: {error}); pass a saved model directory"
        ) from None


def _read_meta(directory: Path) -> dict:
    path = directory / CHECKPOINT_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} has no {CHECKPOINT_CONFIG}; expected a directory written by AudioLM.save_pretrained"
        )
    meta = json.loads(path.read_text())
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a qaudio checkpoint config (format {meta.get('format')!r}, expected {FORMAT!r})"
        )
    return meta


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    return None if dtype is None else torch_dtype(dtype)


def load_checkpoint(
    cls: type[AudioLM],
    path_or_hub_id: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> AudioLM:
    """Rebuild an AudioLM (``cls``) from a directory or hub id written by :func:`save_checkpoint`."""
    directory = local_directory(path_or_hub_id)
    from ..convert.qwen2_audio import import_qwen2_audio, is_qwen2_audio_dir

    if is_qwen2_audio_dir(directory):  # a released Qwen2-Audio: imported with its defaults
        return import_qwen2_audio(directory).to(device=device, dtype=_dtype(dtype))
    meta = _read_meta(directory)
    config = ModelConfig.from_dict(meta["model"])
    audio_tower = WhisperEncoder(WhisperConfig.from_dict(meta["audio_tower"]))
    llm_config = dict(meta["language_model"])
    model_type = llm_config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise ValueError(f"{directory}: language model type {model_type!r} is unknown to this transformers")
    language_model = AutoModelForCausalLM.from_config(
        CONFIG_MAPPING[model_type].from_dict(llm_config), dtype=torch.float32
    )
    projector = build_projector(
        config.projector, config.audio_width, language_model.get_input_embeddings().weight.shape[1]
    )
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    feature_extractor = WhisperFeatureExtractor.from_pretrained(str(directory))
    from .processor import AudioProcessor
    from .towers import build_tower

    saved_towers = meta.get("towers", [])
    if len(saved_towers) != len(config.towers):
        raise ValueError(
            f"{directory}: the model config names {len(config.towers)} second tower(s) but config.json's "
            f"'towers' holds {len(saved_towers)}; the checkpoint is incomplete"
        )
    towers = torch.nn.ModuleList(build_tower(t, c) for t, c in zip(config.towers, saved_towers, strict=True))
    tower_extractors = AudioProcessor.from_directory(directory, config).tower_extractors if towers else []
    model = cls(config, audio_tower, projector, language_model, tokenizer, feature_extractor, towers, tower_extractors)
    model.load_state_dict(load_tensors(directory / WEIGHTS), strict=True)
    apply_trainable(model)
    for part in meta.get("adapters", []):
        load_adapter(model.get_submodule(part), directory / ADAPTERS / part)
    model = model.to(device=device, dtype=_dtype(dtype))
    if meta.get("quantization"):  # saved by a quantized model: its layers are quantized again
        from .quantize import Quantization, quantize

        recipe = Quantization.from_dict(meta["quantization"])
        quantize(model, recipe.mode, recipe.backend, recipe.parts)
    return model
