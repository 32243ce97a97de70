"""Second audio towers beside Whisper: an audio-event encoder, aligned to Whisper's frames and concatenated.

Whisper hears speech well and sound events less so; SALMONN (Tang et al., 2024, section 3.1)
runs BEATs beside it and concatenates the two encoders' frames before its window-level
Q-Former. qaudio does the same with any tower in :data:`TOWERS` (``ModelConfig.towers``):

1. the processor cuts each clip into the tower's windows (:func:`qaudio.model.lengths.tower_window_count`)
   and makes their inputs with the tower's own transformers feature extractor;
2. :func:`encode_tower` runs the tower on every window and averages the patches of each time
   column over frequency: (windows, time columns, D_tower);
3. :func:`align_to_whisper` picks, for every Whisper frame, the window and column that
   :func:`qaudio.model.lengths.tower_frame_sources` names: (B, T', D_tower) on Whisper's grid;
4. :func:`fuse` concatenates along the feature axis, (B, T', D_whisper + sum D_tower), and the
   projector maps that to the LLM as before. The audio-token count does not change.

**Why AST** (transformers ``ASTModel``) rather than CLAP's audio tower (``ClapAudioModel``):
AST reads 16 kHz audio with a 10 ms hop, as Whisper does, so no resampling and a frame grid
that lines up exactly; its patches form a plain (frequency, time) grid whose time columns map
onto frames by one formula; its feature extractor is deterministic. CLAP's tower wants 48 kHz,
its Swin/HTSAT stages shrink time by 32 in a hierarchy of windows, and its feature extractor
picks random crops of clips over 10 s ("fusion"), which would make cached features depend on
chance. Adding CLAP (or BEATs, should transformers ship it) is one more :class:`TowerKind` in
:data:`TOWERS`: a loader, a feature extractor and a function giving (windows, columns, D).

Reference: Gong et al., "AST: Audio Spectrogram Transformer" (Interspeech 2021) and
transformers ``models/audio_spectrogram_transformer``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import ASTConfig, ASTFeatureExtractor, ASTModel
from transformers.feature_extraction_utils import FeatureExtractionMixin

from ..audio import SAMPLE_RATE
from ..config import TINY_RANDOM, ModelConfig, TowerConfig
from .lengths import (
    HOP_LENGTH,
    N_FFT,
    tower_frame_sources,
    tower_patch_grid,
    tower_window_count,
    tower_windows_read,
)
from .sources import Source, fetch_errors, pretrained_config

# Batch keys of tower i (AudioProcessor.prepare writes them, AudioLM reads them).
FEATURES_KEY = "tower_features_{}"  # (B, W_max, max_frames, n_mels): each clip's windows, zero padded
WINDOWS_KEY = "tower_windows_{}"  # (B,): each clip's real windows


def tower_keys(count: int) -> list[str]:
    """The batch keys of ``count`` towers, in order: features and windows of tower 0, of tower 1, ..."""
    return [key.format(i) for i in range(count) for key in (FEATURES_KEY, WINDOWS_KEY)]


# ---- AST -----------------------------------------------------------------------------------------

# Checkpoint prefix of the encoder in ASTForAudioClassification (the released AudioSet models).
_AST_PREFIX = {r"^audio_spectrogram_transformer\.": ""}
AST = "an AST checkpoint (ASTForAudioClassification or ASTModel, e.g. MIT/ast-finetuned-audioset-10-10-0.4593)"


def _ast_config(tower: TowerConfig) -> ASTConfig:
    return ASTConfig(
        hidden_size=tower.d_model,
        num_hidden_layers=tower.layers,
        num_attention_heads=tower.heads,
        intermediate_size=4 * tower.d_model,  # AST (a ViT/DeiT) uses a 4x MLP
        patch_size=tower.patch,
        frequency_stride=tower.frequency_stride,
        time_stride=tower.time_stride,
        max_length=tower.max_frames,
        num_mel_bins=tower.n_mels,
    )


def _load_ast(tower: TowerConfig) -> tuple[nn.Module, TowerConfig]:
    if tower.source == TINY_RANDOM:
        model = ASTModel(_ast_config(tower))
    else:
        source = Source(tower.source, "towers[].source", "a model config JSON file", AST)
        config = pretrained_config(source)
        if config.model_type != "audio-spectrogram-transformer":
            raise ValueError(f"{source} holds a {config.model_type!r} model; expected {AST}")
        with fetch_errors(source):
            loaded: Any = ASTModel.from_pretrained(
                tower.source, config=config, key_mapping=_AST_PREFIX, dtype=torch.float32, output_loading_info=True
            )
        model, info = loaded
        if info["missing_keys"] or info["mismatched_keys"]:
            raise ValueError(
                f"{tower.source} is not a complete AST checkpoint: missing {sorted(info['missing_keys'])[:5]}, "
                f"mismatched {list(info['mismatched_keys'])[:5]}; expected {AST}"
            )
    c = model.config
    patch = c.patch_size if isinstance(c.patch_size, int) else c.patch_size[0]
    resolved = replace(
        tower,
        n_mels=c.num_mel_bins,
        max_frames=c.max_length,
        patch=patch,
        frequency_stride=c.frequency_stride,
        time_stride=c.time_stride,
        d_model=c.hidden_size,
        layers=c.num_hidden_layers,
        heads=c.num_attention_heads,
    )
    return model, resolved


def _ast_extractor(tower: TowerConfig) -> ASTFeatureExtractor:
    """The checkpoint's own extractor (its AudioSet normalisation) for a pretrained tower, else AST's defaults."""
    if tower.source != TINY_RANDOM:
        with fetch_errors(Source(tower.source, "towers[].source", "a model config JSON file", AST)):
            return ASTFeatureExtractor.from_pretrained(tower.source)
    return ASTFeatureExtractor(num_mel_bins=tower.n_mels, max_length=tower.max_frames)


def _ast_columns(model: nn.Module, windows: torch.Tensor, tower: TowerConfig) -> torch.Tensor:
    """(N, max_frames, n_mels) -> (N, time columns, D): the patch tokens averaged over frequency."""
    freq, time = tower_patch_grid(tower)
    states = model(input_values=windows).last_hidden_state  # (N, 2 + freq * time, D): [CLS], [DIST], patches
    # ASTPatchEmbeddings flattens its (D, freq, time) convolution output frequency-major.
    patches = states[:, 2:].reshape(states.shape[0], freq, time, states.shape[-1])  # (N, freq, time, D)
    return patches.mean(dim=1)  # (N, time, D)


@dataclass(frozen=True)
class TowerKind:
    """What qaudio needs of one kind of tower."""

    load: Callable[[TowerConfig], tuple[nn.Module, TowerConfig]]  # config -> (module, config with its sizes)
    feature_extractor: Callable[[TowerConfig], Any]  # config -> the tower's transformers feature extractor
    columns: Callable[[nn.Module, torch.Tensor, TowerConfig], torch.Tensor]  # (N, ...) windows -> (N, columns, D)
    extractor_class: type[FeatureExtractionMixin]  # to read a saved extractor back


TOWERS: dict[str, TowerKind] = {
    "ast": TowerKind(_load_ast, _ast_extractor, _ast_columns, ASTFeatureExtractor),
}


def load_towers(configs: Sequence[TowerConfig]) -> tuple[nn.ModuleList, tuple[TowerConfig, ...], list[Any]]:
    """The towers named by ``configs``, their configs with the checkpoints' sizes, and their feature extractors."""
    modules, resolved, extractors = nn.ModuleList(), [], []
    for config in configs:
        kind = TOWERS[config.kind]
        module, config = kind.load(config)
        modules.append(module)
        resolved.append(config)
        extractors.append(kind.feature_extractor(config))
    return modules, tuple(resolved), extractors


def build_tower(config: TowerConfig, transformers_config: dict) -> nn.Module:
    """An empty tower of a saved model (its weights are loaded afterwards) from its saved transformers config."""
    if config.kind == "ast":
        return ASTModel(ASTConfig.from_dict(transformers_config))
    raise ValueError(f"no rebuild rule for tower kind {config.kind!r}")


# ---- Inputs: clip -> windows -> features (the processor's part) --------------------------------


def window_features(extractor: Any, clips: Sequence[np.ndarray], config: ModelConfig, index: int) -> dict:
    """Tower ``index``'s batch entries for ``clips``: each clip cut into the windows its aligned
    frames read, each window's features made by the tower's own extractor, zero padded to the
    batch's most windows."""
    tower = config.towers[index]
    span = tower.max_frames * HOP_LENGTH  # samples per window
    counts = [int(tower_window_count(len(c), config, tower)) for c in clips]
    pieces = []
    for clip, count in zip(clips, counts, strict=True):
        for w in range(count):
            piece = clip[w * span : (w + 1) * span]
            # The extractor's 25 ms frames need N_FFT samples; a shorter tail gets zeros (silence) after it.
            pieces.append(np.pad(piece, (0, max(0, N_FFT - len(piece)))))
    values = extractor(pieces, sampling_rate=SAMPLE_RATE, return_tensors="pt")["input_values"]  # (sum W, F, M)
    features = torch.zeros((len(clips), max(counts), *values.shape[1:]), dtype=values.dtype)
    start = 0
    for i, count in enumerate(counts):
        features[i, :count] = values[start : start + count]
        start += count
    return {FEATURES_KEY.format(index): features, WINDOWS_KEY.format(index): torch.tensor(counts)}


# ---- Running: windows -> columns -> Whisper's grid -> fused ------------------------------------


def encode_tower(module: nn.Module, config: TowerConfig, features: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """(B, W_max, ...) window inputs and (B,) real windows -> (B, W_max, columns, D); padded windows are zero
    and never run."""
    batch, most = features.shape[:2]
    real = torch.arange(most, device=windows.device) < windows[:, None]  # (B, W_max)
    columns = TOWERS[config.kind].columns(module, features[real], config)  # (sum W, columns, D)
    out = columns.new_zeros((batch, most, *columns.shape[1:]))
    out[real] = columns
    return out


def align_to_whisper(
    columns: torch.Tensor, windows: torch.Tensor, frames: int, config: ModelConfig, tower: TowerConfig
) -> torch.Tensor:
    """(B, W_max, columns, D) -> (B, frames, D): for each Whisper frame, the window and column
    :func:`~qaudio.model.lengths.tower_frame_sources` names for it."""
    window, column = (t.to(columns.device) for t in tower_frame_sources(frames, config, tower))  # (frames,) x 2
    return columns[:, window, column]  # (B, frames, D)


def check_windows(windows: torch.Tensor, lengths: torch.Tensor, config: ModelConfig, index: int) -> None:
    """Raise, with both numbers, when a clip's tower windows are not the ones its Whisper frames read."""
    tower = config.towers[index]
    expected = tower_windows_read(lengths, config, tower)  # (B,)
    if not torch.equal(windows, expected.to(windows.device)):
        b = int((windows != expected.to(windows.device)).nonzero()[0, 0])
        raise ValueError(
            f"clip {b} brings {int(windows[b])} window(s) for tower {index} ({tower.kind}) but its {int(lengths[b])} "
            f"Whisper frames read {int(expected[b])} (tower_window_count); build batches with AudioProcessor.prepare"
        )


def fuse(whisper_states: torch.Tensor, tower_states: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate along the feature axis, as SALMONN does: (B, T', D_whisper + sum D_tower)."""
    return torch.cat([whisper_states, *(s.to(whisper_states.dtype) for s in tower_states)], dim=-1)
