"""The audio tower: a Whisper encoder from transformers, loaded from any source, run on real lengths.

Loading (:func:`load_audio_tower`), by ``EncoderConfig.source``:

* ``"tiny-random"``: a random Whisper-shaped encoder of the configured size (tests);
* ``"pip:<package>"`` (or an installed package's bare name) or a CTranslate2 / faster-whisper
  directory: converted once to a Hugging Face directory by
  :func:`qaudio.convert.whisper_cache.whisper_checkpoint`, then loaded as below;
* a hub id or a local Hugging Face directory: ``WhisperEncoder.from_pretrained`` on the string,
  with the checkpoint's ``model.encoder.`` prefix mapped away (the decoder weights are skipped).

Running (:func:`encode`): transformers 5's ``WhisperEncoder.forward`` accepts only 3000 mel
frames (30 s). Padding a 3 s clip to 30 s costs 10x the compute, so by default the encoder's
own modules are run on each clip's real length: conv stem, the first T' rows of the position
table, the layers with padded frames masked out of attention, the final LayerNorm. In a batch,
frames past a clip's end are zeroed before each convolution, so that the clip sees exactly the
zero padding it would see alone: batched equals one-by-one. Measured on this machine: 15x faster
than 30 s padding on short clips, batched within 1.5e-5 of one-by-one.

``pad_to_30s=True`` runs the stock 30 s forward (as Whisper was pretrained) and keeps each
clip's first T' frames. The two modes give different features (cosine about 0.98: with
30 s padding every frame also attends to the silence after the clip), so a model must be
trained and tested in one mode; the mode is part of the saved config. Both give the same
number of frames, :func:`qaudio.model.lengths.encoder_frame_count`.

``EncoderConfig.kind == "qwen2-audio"`` is Qwen2-Audio's audio tower (Whisper's modules and
weights): with ``pad_to_30s`` the 30 s input's padding is masked out of attention, and in both
modes pairs of frames are average-pooled before the final LayerNorm, which is what transformers
``Qwen2AudioEncoder`` computes with its ``feature_attention_mask`` (tested against it).

Reference: transformers ``models/whisper/modeling_whisper.py`` (``WhisperEncoder.forward``),
whose steps :func:`_encode_real_length` repeats with a mask.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.utils import logging as hf_logging

from ..config import ENCODER_KINDS, TINY_RANDOM, EncoderConfig
from ..convert.whisper_packages import is_ctranslate2_source
from .lengths import CONV_STRIDE, WHISPER_POSITIONS, encoder_frame_count, tower_frame_count
from .sources import Source, fetch_errors, pretrained_config

# Checkpoint key prefixes of the encoder in WhisperForConditionalGeneration ("model.encoder.")
# and WhisperModel ("encoder."); a saved WhisperEncoder has none.
_ENCODER_PREFIX = {r"^(model\.)?encoder\.": ""}


def whisper_source_kind(source: str) -> str:
    """``tiny-random``, ``ctranslate2`` (a pip package or a CTranslate2 dir) or ``huggingface`` (hub id or dir)."""
    if source == TINY_RANDOM:
        return "tiny-random"
    if is_ctranslate2_source(source):
        return "ctranslate2"
    return "huggingface"


def _random_encoder(config: EncoderConfig) -> WhisperEncoder:
    whisper = WhisperConfig(
        num_mel_bins=config.n_mels,
        d_model=config.d_model,
        encoder_layers=config.layers,
        encoder_attention_heads=config.heads,
        encoder_ffn_dim=4 * config.d_model,  # every Whisper size uses a 4x MLP
        max_source_positions=WHISPER_POSITIONS,
        # The decoder is never built; these only keep WhisperConfig's defaults consistent.
        decoder_layers=1,
        decoder_attention_heads=config.heads,
        decoder_ffn_dim=4 * config.d_model,
        vocab_size=8,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    return WhisperEncoder(whisper)


@contextlib.contextmanager
def _quiet_transformers():
    """Hide the table of skipped decoder weights that from_pretrained prints; missing keys are checked by us."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


WHISPER = "a Whisper checkpoint (WhisperForConditionalGeneration, WhisperModel or WhisperEncoder)"


def _pretrained_encoder(name_or_dir: str) -> WhisperEncoder:
    source = Source(name_or_dir, "encoder.source", "--encoder-source", WHISPER)
    config = pretrained_config(source)
    if config.model_type != "whisper":
        raise ValueError(
            f"{source} holds a {config.model_type!r} model; expected {WHISPER}. A causal LM belongs in "
            "llm.source (--llm-source)"
        )
    with _quiet_transformers(), fetch_errors(source):
        # (model, loading info) with output_loading_info: transformers' annotation names the model only
        loaded: Any = WhisperEncoder.from_pretrained(
            name_or_dir, config=config, key_mapping=_ENCODER_PREFIX, dtype=torch.float32, output_loading_info=True
        )
    encoder, info = loaded
    if info["missing_keys"] or info["mismatched_keys"]:
        raise ValueError(
            f"{name_or_dir} is not a complete Whisper checkpoint: missing {sorted(info['missing_keys'])[:5]}, "
            f"mismatched {list(info['mismatched_keys'])[:5]}; expected a WhisperForConditionalGeneration, "
            "WhisperModel or WhisperEncoder directory or hub id"
        )
    return encoder


def _load(config: EncoderConfig) -> WhisperEncoder:
    if config.source == TINY_RANDOM:
        return _random_encoder(config)
    from ..convert.whisper_cache import whisper_checkpoint

    return _pretrained_encoder(whisper_checkpoint(config.source))


def load_audio_tower(config: EncoderConfig) -> tuple[WhisperEncoder, EncoderConfig]:
    """The encoder named by ``config.source`` and the config with the checkpoint's sizes filled in."""
    encoder = _load(config)
    whisper = encoder.config
    if whisper.max_source_positions != WHISPER_POSITIONS:
        raise ValueError(
            f"{config.source}: the encoder has {whisper.max_source_positions} positions; "
            f"qaudio expects Whisper's {WHISPER_POSITIONS} (30 s)"
        )
    resolved = replace(
        config,
        n_mels=whisper.num_mel_bins,
        d_model=whisper.d_model,
        layers=whisper.encoder_layers,
        heads=whisper.encoder_attention_heads,
    )
    return encoder, resolved


# ---- Running the encoder --------------------------------------------------------------------


def _frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    return torch.arange(frames, device=lengths.device) < lengths[:, None]  # (B, T) bool


def _layers_masked(encoder: WhisperEncoder, x: torch.Tensor, valid: torch.Tensor, pool: int) -> torch.Tensor:
    """Positions, the layers with invalid frames masked out of attention, pooling, the final LayerNorm."""
    x = x + encoder.embed_positions.weight[: x.shape[1]]  # Whisper's sinusoids: the first T' positions
    x = F.dropout(x, p=encoder.dropout, training=encoder.training)
    # Additive mask over keys (works for eager and SDPA attention): padded frames get -inf-like scores.
    mask = torch.zeros(valid.shape, dtype=x.dtype, device=x.device).masked_fill(~valid, torch.finfo(x.dtype).min)
    mask = mask[:, None, None, :]  # (B, 1, 1, T')
    for layer in encoder.layers:
        x = layer(x, mask)
    if pool > 1:  # Qwen2-Audio: AvgPool1d(pool, stride=pool) over time, a trailing odd frame dropped
        groups = x.shape[1] // pool
        x = x[:, : groups * pool].reshape(x.shape[0], groups, pool, x.shape[2]).mean(dim=2)  # (B, T'/pool, D)
    return encoder.layer_norm(x)


def _encode_real_length(
    encoder: WhisperEncoder, features: torch.Tensor, mel_lengths: torch.Tensor, pool: int = 1
) -> torch.Tensor:
    """WhisperEncoder.forward on the real lengths: features (B, n_mels, T) -> states (B, T' / pool, D)."""
    mel_valid = _frame_mask(mel_lengths, features.shape[-1])[:, None, :].to(features.dtype)  # (B, 1, T)
    # Zero what lies past each clip before both convolutions: then the last real frames see the
    # same zeros that the convolutions' own padding gives the longest clip of the batch.
    x = F.gelu(encoder.conv1(features * mel_valid)) * mel_valid  # (B, D, T)
    x = F.gelu(encoder.conv2(x)).transpose(1, 2)  # (B, T', D)
    valid = _frame_mask(encoder_frame_count(mel_frames=mel_lengths), x.shape[1])  # (B, T')
    return _layers_masked(encoder, x, valid, pool)


def _encode_padded_30s(encoder: WhisperEncoder, features: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
    """The stock forward on 30 s inputs, cut to the longest clip's frames: (B, n_mels, 3000) -> (B, T', D)."""
    states = encoder(features).last_hidden_state  # (B, 1500, D)
    return states[:, : int(encoder_frame_count(mel_frames=mel_lengths).max())]


def _encode_padded_30s_masked(
    encoder: WhisperEncoder, features: torch.Tensor, mel_lengths: torch.Tensor, pool: int
) -> torch.Tensor:
    """Qwen2-Audio's tower: 30 s inputs, the padding's frames masked out of attention, pooled:
    (B, n_mels, 3000) -> (B, T'_max / pool, D), as transformers ``Qwen2AudioEncoder`` with its
    ``feature_attention_mask``. The convolutions see the padding's log-mels, as there."""
    x = F.gelu(encoder.conv1(features))  # (B, D, 3000)
    x = F.gelu(encoder.conv2(x)).transpose(1, 2)  # (B, 1500, D)
    frames = encoder_frame_count(mel_frames=mel_lengths)  # (B,)
    states = _layers_masked(encoder, x, _frame_mask(frames, x.shape[1]), pool)  # (B, 1500 / pool, D)
    return states[:, : int((frames // pool).max())]


def encode(
    encoder: WhisperEncoder,
    features: torch.Tensor,
    mel_lengths: torch.Tensor,
    pad_to_30s: bool,
    kind: str = "whisper",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tower states (B, T'_max, D) zeroed past each clip, and their lengths (B,) in tower frames.

    ``features`` are log-mels (B, n_mels, T) and ``mel_lengths`` each clip's real mel frames;
    with ``pad_to_30s`` T must be 3000 (what :meth:`AudioProcessor.prepare` gives in that mode).
    ``kind`` (``qaudio.config.ENCODER_KINDS``) adds Qwen2-Audio's pooling and padding mask.
    """
    tower = ENCODER_KINDS[kind]
    if features.dim() != 3 or features.shape[1] != encoder.config.num_mel_bins:
        raise ValueError(
            f"input_features must be (batch, {encoder.config.num_mel_bins} mel bins, frames), "
            f"got {tuple(features.shape)}"
        )
    if mel_lengths.shape != (features.shape[0],):
        raise ValueError(f"feature_lengths must be ({features.shape[0]},), got {tuple(mel_lengths.shape)}")
    window = encoder.config.max_source_positions * CONV_STRIDE
    longest = int(mel_lengths.max())
    if longest > window:
        raise ValueError(
            f"a clip has {longest} mel frames ({longest / 100:.2f} s), more than the encoder window of "
            f"{window} ({window / 100:.0f} s); split long audio first (qaudio.chunking)"
        )
    if int(mel_lengths.min()) < 1 or longest > features.shape[-1]:
        raise ValueError(
            f"feature_lengths must be in 1..{features.shape[-1]} (the frames given), got {mel_lengths.tolist()}"
        )
    if pad_to_30s:
        if features.shape[-1] != window:
            raise ValueError(f"with pad_to_30s the encoder takes {window} mel frames, got {features.shape[-1]}")
        if tower.mask_30s_padding:
            states = _encode_padded_30s_masked(encoder, features, mel_lengths, tower.pool)
        else:
            states = _encode_padded_30s(encoder, features, mel_lengths)  # the stock forward: no pooling
    else:
        states = _encode_real_length(encoder, features[..., :longest], mel_lengths, tower.pool)
    lengths = tower_frame_count(encoder_frame_count(mel_frames=mel_lengths), kind)  # (B,)
    states = states * _frame_mask(lengths, states.shape[1])[..., None].to(states.dtype)  # padding -> 0
    return states, lengths
