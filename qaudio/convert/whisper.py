"""Whisper from a CTranslate2 (faster-whisper) model to a Hugging Face directory: the tensor map.

Every variable of the CTranslate2 ``WhisperSpec`` (:mod:`qaudio.convert.ctranslate2`) is mapped
onto ``WhisperForConditionalGeneration``'s names; a variable that maps to nothing, or a Hugging
Face tensor that nothing fills, fails the import. :func:`import_whisper` writes a directory that
``from_pretrained`` loads with no missing or unexpected keys, with the configuration, generation
settings and tokenizer of :mod:`qaudio.convert.whisper_config`.

References:
- The Whisper spec and its names: CTranslate2 ``specs/whisper_spec.py`` and the converter
  ``converters/transformers.py`` (``WhisperLoader``, ``BartLoader.set_attention``), which fuses
  self-attention q;k;v into ``linear_0`` and cross-attention k;v into ``linear_1``, with a zero
  bias standing in for Whisper's bias-free k projection.
- The target names: transformers ``models/whisper/modeling_whisper.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..model.weights import mismatches, shapes
from .ctranslate2 import (
    CT2Model,
    CTranslate2FormatError,
    directory_files,
    model_files,
    read_config,
    read_ctranslate2,
    read_vocabulary,
)
from .whisper_config import build_tokenizer, english_normalizer_file, whisper_config, whisper_generation_config
from .whisper_packages import find_ctranslate2_dir

if TYPE_CHECKING:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

PROVENANCE_FILE = "qaudio_import.json"  # written last: its presence marks a finished import
IMPORTER_VERSION = 1  # bump when the output changes, so cached imports are redone
# Scalars that drive CTranslate2's runtime and have no Hugging Face counterpart. The alignment
# heads themselves come from config.json; alibi's sub-options are moot once alibi is checked off.
IGNORED_SCALARS = ("alignment_heads", "alignment_layer", "alibi_use_positive_positions", "scale_alibi")


class _Mapping:
    """Builds the Hugging Face state dict while recording which CTranslate2 variables it used,
    so a variable that nothing maps fails the import instead of being dropped silently."""

    def __init__(self, ct2: CT2Model):
        self.ct2 = ct2
        self.used: set[str] = set()
        self.state: dict[str, np.ndarray] = {}
        self._converted: dict[str, np.ndarray] = {}  # an aliased variable is widened once

    def take(self, name: str) -> np.ndarray:
        target = self.ct2.resolve(name)
        self.used.add(target)
        if f"{name}_scale" in self.ct2:
            self.used.add(self.ct2.resolve(f"{name}_scale"))
        if target not in self._converted:
            self._converted[target] = self.ct2.float32(name)
        return self._converted[target]

    def copy(self, ct2_name: str, hf_name: str) -> None:
        self.state[hf_name] = self.take(ct2_name)

    def linear(self, ct2_prefix: str, hf_prefix: str) -> None:
        self.copy(f"{ct2_prefix}/weight", f"{hf_prefix}.weight")
        self.copy(f"{ct2_prefix}/bias", f"{hf_prefix}.bias")

    def layer_norm(self, ct2_prefix: str, hf_prefix: str) -> None:
        self.copy(f"{ct2_prefix}/gamma", f"{hf_prefix}.weight")
        self.copy(f"{ct2_prefix}/beta", f"{hf_prefix}.bias")

    def fused(self, ct2_prefix: str, hf_prefix: str, projections: tuple[str, ...]) -> None:
        """Split a fused projection (rows q;k;v or k;v) into ``<p>_proj``; k keeps no bias."""
        weight = self.take(f"{ct2_prefix}/weight")  # (n * d, d)
        bias = self.take(f"{ct2_prefix}/bias")  # (n * d,)
        n = len(projections)
        if weight.shape[0] % n or bias.shape != (weight.shape[0],):
            raise CTranslate2FormatError(
                f"{ct2_prefix}: weight {weight.shape} and bias {bias.shape} do not split into {n}"
            )
        for p, w, b in zip(projections, np.split(weight, n), np.split(bias, n), strict=True):
            self.state[f"{hf_prefix}.{p}_proj.weight"] = w  # (d, d)
            if p == "k":
                # Whisper's k projection has no bias; CTranslate2 fills its slot with zeros.
                # Anything else would be silently lost, so refuse it.
                if np.any(b != 0):
                    raise CTranslate2FormatError(f"{ct2_prefix}: the k bias is not zero (max |b| = {np.abs(b).max()})")
            else:
                self.state[f"{hf_prefix}.{p}_proj.bias"] = b

    def unused(self) -> list[str]:
        ignored = {n for n in self.ct2.variables if n.rsplit("/", 1)[-1] in IGNORED_SCALARS}
        return sorted(set(self.ct2.variables) - self.used - ignored)


def whisper_state_dict(ct2: CT2Model, config: WhisperConfig) -> dict[str, np.ndarray]:
    """Every tensor of ``WhisperForConditionalGeneration``, as float32 arrays, by HF name."""
    m = _Mapping(ct2)
    # The runtime flags were checked by whisper_config; reading them marks them used.
    for flag in ("pre_norm", "alibi", "scale_embeddings", "start_from_zero_embedding", "activation", "num_heads"):
        m.used.update(n for n in (f"decoder/{flag}", f"encoder/{flag}") if n in ct2.variables)

    m.linear("encoder/conv1", "model.encoder.conv1")  # (d, n_mels, 3): same layout as torch Conv1d
    m.linear("encoder/conv2", "model.encoder.conv2")  # (d, d, 3)
    m.copy("decoder/embeddings/weight", "model.decoder.embed_tokens.weight")  # (vocab, d)
    m.copy("decoder/projection/weight", "proj_out.weight")  # (vocab, d); tied or not, see config
    for side, layers in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        hf_side = f"model.{side}"
        m.copy(f"{side}/position_encodings/encodings", f"{hf_side}.embed_positions.weight")  # (positions, d)
        m.layer_norm(f"{side}/layer_norm", f"{hf_side}.layer_norm")
        for i in range(layers):
            ct, hf = f"{side}/layer_{i}", f"{hf_side}.layers.{i}"
            m.layer_norm(f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
            m.fused(f"{ct}/self_attention/linear_0", f"{hf}.self_attn", ("q", "k", "v"))
            m.linear(f"{ct}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
            if side == "decoder":  # cross-attention: q from the decoder, fused k;v from the encoder
                m.layer_norm(f"{ct}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
                m.linear(f"{ct}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
                m.fused(f"{ct}/attention/linear_1", f"{hf}.encoder_attn", ("k", "v"))
                m.linear(f"{ct}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
            m.layer_norm(f"{ct}/ffn/layer_norm", f"{hf}.final_layer_norm")
            m.linear(f"{ct}/ffn/linear_0", f"{hf}.fc1")
            m.linear(f"{ct}/ffn/linear_1", f"{hf}.fc2")

    if unused := m.unused():
        raise CTranslate2FormatError(
            f"model.bin variables that map to no Whisper tensor: {unused[:10]} ({len(unused)} in all)"
        )
    return m.state


def build_whisper_model(
    ct2: CT2Model, vocabulary: list[str], ct2_config: dict | None = None
) -> WhisperForConditionalGeneration:
    """A float32 ``WhisperForConditionalGeneration`` holding exactly the CTranslate2 weights.

    The load is strict: a missing, unexpected or mis-shaped key raises, naming the keys.
    """
    import torch
    from transformers import WhisperForConditionalGeneration

    ct2_config = ct2_config or {}
    config = whisper_config(ct2, vocabulary, ct2_config)
    state = whisper_state_dict(ct2, config)
    with torch.device("meta"):  # no random init: every tensor is assigned below
        model = WhisperForConditionalGeneration(config)
    if problems := mismatches(state, shapes(model)):
        raise CTranslate2FormatError(f"the converted weights do not fit WhisperForConditionalGeneration: {problems}")
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()  # assign=True replaced both tensors; share them again
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise CTranslate2FormatError(f"tensors left uninitialised after the load: {leftover}")
    model.generation_config = whisper_generation_config(config, vocabulary, ct2_config)
    return model.eval()


# ---- The import ---------------------------------------------------------------------------


def import_whisper(source: str, out_dir: str | Path) -> Path:
    """Convert the CTranslate2 Whisper model ``source`` into a Hugging Face directory.

    Writes config.json, generation_config.json, model.safetensors (float32), the tokenizer
    (tokenizer.json, tokenizer_config.json, normalizer.json), preprocessor_config.json for
    ``WhisperFeatureExtractor``, and qaudio_import.json (where it came from). Returns ``out_dir``.
    """
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    directory = find_ctranslate2_dir(source)
    ct2 = read_ctranslate2(model_files(directory))
    vocabulary = read_vocabulary(directory)
    ct2_config = read_config(directory)
    model = build_whisper_model(ct2, vocabulary, ct2_config)
    tokenizer = build_tokenizer(directory, vocabulary)
    feature_extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(out_dir)
    feature_extractor.save_pretrained(out_dir)  # preprocessor_config.json, for loaders that want it alone
    if (normalizer := english_normalizer_file()) is not None:
        shutil.copyfile(normalizer, out_dir / "normalizer.json")
    provenance = {
        "source": source,
        "ctranslate2_dir": str(directory),
        "files": {f.name: f.stat().st_size for f in directory_files(directory)},
        "spec": ct2.spec,
        "spec_revision": ct2.revision,
        "binary_version": ct2.binary_version,
        "stored_dtype": str(ct2.raw("decoder/embeddings/weight").dtype),
        "importer_version": IMPORTER_VERSION,
    }
    (out_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return out_dir
