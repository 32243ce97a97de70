"""The training configuration: one dataclass, its command line, and YAML overrides.

Every field has a default and a one-line help text; the command line (``--max-steps``) is
generated from the fields, so the flags, the YAML keys and the config written into each run
and checkpoint are one list (litgpt's habit: the config is the CLI). Precedence, lowest
first: field defaults, the ``--config`` YAML file, flags given on the command line.

This module imports no torch, so ``qaudio train --help`` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import flags
from ..config import PROJECTOR_NAMES
from .mixing import MIX_BY, parse_mix_weights

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "linear", "constant")
LONG_AUDIO = ("skip", "chunk")
TRAIN_MODES = ("frozen", "full", "lora")
LLM_MODES = (*TRAIN_MODES, "qlora")  # QLoRA: LoRA on the LLM held in 4 bits
CACHE_DTYPES = ("fp16", "bf16", "fp32")


def _f(default: Any, help: str, choices: tuple | None = None, group: str = "", metavar: str | None = None) -> Any:
    """A config field: its default, help line, choices and flag placeholder travel as metadata."""
    return flags.option(default, help, choices=choices, group=group, metavar=metavar)


@dataclass
class TrainConfig:
    # ---- data -----------------------------------------------------------------------------
    tasks: str = _f(
        "all",
        "comma-separated task names (or task .py files) to train; a task listed twice is "
        "sampled twice as often; 'all' = every task found in the training data",
        group="data",
        metavar="TASK,TASK,...",
    )
    recipes: str = _f(
        "synthetic",
        "comma-separated corpora, each NAME[:ROOT][@TRAIN[/DEV]] (e.g. "
        "synthetic:data/synthetic,librispeech:/data/LibriSpeech@train-clean-100/dev-clean); "
        "NAME is a recipe name or .py file; ROOT defaults to $QAUDIO_DATA/NAME, else data/NAME; "
        "splits default to --train-split/--dev-split",
        group="data",
        metavar="NAME[:ROOT][@TRAIN[/DEV]],...",
    )
    train_split: str = _f("train", "default training split of every recipe", group="data")
    dev_split: str = _f("dev", "default dev split (per-task dev loss); 'none' disables dev evaluation", group="data")
    temperature: float = _f(
        1.0,
        "task mixing temperature T: task i is drawn with probability proportional to "
        "(times listed) * (examples)^(1/T); 1 = by size, large T = uniform",
        group="data",
    )
    mix_by: str = _f(
        "task",
        "what --temperature balances: each 'task', or each task's language 'pair' (asr en, asr de, "
        "s2tt en->de...), so that a small language is lifted like a small task; a task listed twice "
        "doubles all its pairs",
        choices=MIX_BY,
        group="data",
    )
    mix_weights: str = _f(
        "",
        "pin some mixing groups' probabilities, e.g. 'asr en=0.28,ser=0.08' (groups as the log's first "
        "line names them); the other groups share the rest by --temperature",
        group="data",
        metavar="GROUP=P,...",
    )
    long_audio: str = _f(
        "skip",
        "examples longer than the encoder window: 'skip' them (counted), or 'chunk' "
        "those with word times at word boundaries (others are skipped, counted)",
        choices=LONG_AUDIO,
        group="data",
    )
    strict: bool = _f(
        False,
        "stop at the first unusable example (bad audio, empty target) instead of skipping and counting it",
        group="data",
    )
    max_dev_examples: int = _f(64, "dev examples per task for the dev loss", group="data")
    # ---- model and what trains --------------------------------------------------------------
    model: str = _f(
        "demo",
        "model preset name, a ModelConfig .json file, or a saved model directory to fine-tune",
        group="model",
        metavar="PRESET|FILE|DIR",
    )
    # The model flags below override fields of the --model config (one per field, listed in
    # MODEL_FLAGS); None = not given: the preset's value, or on a resume the checkpoint's.
    encoder_source: str | None = _f(
        None,
        "audio encoder: a Whisper hub id (openai/whisper-small), a local Whisper "
        "or CTranslate2 directory, pip:<package>, or tiny-random (default: the preset's)",
        group="model",
        metavar="HUB_ID|DIR",
    )
    llm_source: str | None = _f(
        None,
        "LLM: a causal-LM hub id (Qwen/Qwen2.5-0.5B), a local directory, or scratch (default: the preset's)",
        group="model",
        metavar="HUB_ID|DIR",
    )
    llm_tokenizer: str | None = _f(
        None,
        "tokenizer hub id or directory, if not the LLM's own (default: the preset's)",
        group="model",
        metavar="HUB_ID|DIR",
    )
    projector: str | None = _f(None, "projector kind (default: the preset's)", choices=PROJECTOR_NAMES, group="model")
    projector_stack: int | None = _f(
        None,
        "encoder frames per projector output (linear/mlp/conv) or per Q-Former window (default: the preset's)",
        group="model",
    )
    projector_hidden: int | None = _f(
        None, "projector hidden width (mlp/conv) or Q-Former width (default: the preset's)", group="model"
    )
    projector_queries: int | None = _f(
        None, "qformer: learned queries (outputs) per window (default: the preset's)", group="model"
    )
    projector_layers: int | None = _f(None, "qformer: transformer layers (default: the preset's)", group="model")
    projector_heads: int | None = _f(
        None, "qformer: attention heads, dividing --projector-hidden (default: the preset's)", group="model"
    )
    train_encoder: str | None = _f(
        None,
        "train the audio encoder: frozen, full or lora (default: the preset's)",
        choices=TRAIN_MODES,
        group="model",
    )
    train_projector: bool | None = _f(None, "train the projector (default: the preset's)", group="model")
    train_llm: str | None = _f(
        None,
        "train the LLM: frozen, full, lora, or qlora (LoRA on the LLM held in 4-bit "
        "NF4; needs bitsandbytes) (default: the preset's)",
        choices=LLM_MODES,
        group="model",
    )
    lora_r: int | None = _f(None, "LoRA rank (default: the preset's)", group="model")
    lora_alpha: float | None = _f(None, "LoRA alpha (default: the preset's)", group="model")
    lora_dropout: float | None = _f(None, "dropout on the LoRA input (default: the preset's)", group="model")
    lora_targets: str | None = _f(
        None, "comma-separated module names LoRA adapts, e.g. q_proj,v_proj (default: the preset's)", group="model"
    )
    encoder_lora_targets: str | None = _f(
        None,
        "comma-separated Whisper encoder module names LoRA adapts with --train-encoder lora (default: the preset's)",
        group="model",
    )
    # ---- optimisation ------------------------------------------------------------------------
    max_steps: int = _f(0, "optimizer steps to train; 0 = from --epochs (or --max-minutes)", group="optim")
    epochs: float = _f(
        1.0,
        "passes over the training examples (one epoch = as many examples as the "
        "selected tasks hold), used when --max-steps is 0",
        group="optim",
    )
    max_minutes: float = _f(
        0.0,
        "time budget: when > 0 and --max-steps is 0, the step count is set from a "
        "timed probe of a few batches so that the training steps (and dev passes) take about "
        "this many minutes; data loading, feature caching and saving come on top",
        group="optim",
    )
    batch_size: int = _f(
        32, "examples per micro-batch per process (0 = no count limit; then --batch-seconds must be set)", group="optim"
    )
    batch_seconds: float = _f(
        0.0,
        "cap on padded audio seconds per micro-batch per process (examples x longest clip); 0 = no cap",
        group="optim",
    )
    grad_accum: int = _f(1, "micro-batches accumulated per optimizer step", group="optim")
    lr: float = _f(1e-3, "peak learning rate", group="optim")
    schedule: str = _f("cosine", "learning-rate schedule after warm-up", choices=SCHEDULES, group="optim")
    warmup: float = _f(0.05, "linear warm-up: a fraction of the steps (< 1) or a number of steps (>= 1)", group="optim")
    min_lr_ratio: float = _f(0.0, "final learning rate as a fraction of --lr", group="optim")
    weight_decay: float = _f(0.01, "AdamW weight decay (matrices only; not biases, norms, embeddings)", group="optim")
    adam_beta1: float = _f(0.9, "AdamW beta1", group="optim")
    adam_beta2: float = _f(0.98, "AdamW beta2", group="optim")
    adam_eps: float = _f(1e-8, "AdamW epsilon", group="optim")
    grad_clip: float = _f(1.0, "clip the gradient norm to this (0 = no clipping)", group="optim")
    loss_weighting: str = _f(
        "token",
        "how a batch's loss averages: over target 'token's (the LM objective) "
        "or per 'example' (each example counts the same)",
        choices=("token", "example"),
        group="optim",
    )
    ctc_weight: float = _f(
        0.0,
        "weight of an auxiliary CTC loss of the audio slots against the transcript (ASR examples; "
        "qaudio.model.ctc); 0 = off",
        group="optim",
    )
    precision: str = _f(
        "auto",
        "fp32, bf16 or fp16 autocast; auto = bf16 where the device supports it fast "
        "(CUDA bf16, CPU with avx512_bf16/AMX), else fp32",
        choices=PRECISIONS,
        group="optim",
    )
    bucket_size: int = _f(
        50,
        "micro-batches per length-sorting window (duration bucketing: larger = less padding, less randomness)",
        group="optim",
    )
    max_bad_steps: int = _f(10, "abort after this many non-finite losses in a row", group="optim")
    # ---- frozen-encoder feature cache -------------------------------------------------------
    cache_encoder: str | None = _f(
        None,
        "compute the frozen encoder's outputs once into this directory (sharded, "
        "keyed by audio content and encoder identity) and train from them",
        group="cache",
        metavar="DIR",
    )
    cache_dtype: str = _f("fp16", "storage dtype of cached encoder outputs", choices=CACHE_DTYPES, group="cache")
    # ---- audio augmentation of training examples (qaudio/training/augmentation.py) -------------
    augment: str = _f(
        "",
        "augment training examples: comma-separated NAME or NAME:PROBABILITY from speed, gain, noise, "
        "specaugment (these change the encoder's input: they turn --cache-encoder off) and feature-mask "
        "(masks on cached encoder outputs; needs --cache-encoder); e.g. noise:0.5,gain,speed,specaugment; "
        "'' = none. Dev passes and evaluation are never augmented",
        group="augment",
        metavar="NAME[:P],...",
    )
    augment_tasks: str = _f("all", "tasks whose training examples are augmented: 'all' or TASK,TASK", group="augment")
    augment_noise_dir: str | None = _f(
        None,
        "noise: a folder of noise files (wav, flac, ogg, mp3; searched recursively) instead of the "
        "synthetic scene textures",
        group="augment",
        metavar="DIR",
    )
    augment_snr_db: str = _f("5,20", "noise: signal-to-noise ratio range LO,HI in dB", group="augment")
    augment_gain_db: str = _f("-6,6", "gain: range LO,HI in dB", group="augment")
    augment_speeds: str = _f("0.9,1.0,1.1", "speed: factors drawn from (>1 faster and shorter)", group="augment")
    augment_freq_masks: int = _f(2, "specaugment/feature-mask: frequency (channel) masks per clip", group="augment")
    augment_freq_width: int = _f(27, "specaugment: widest frequency mask, in mel bins", group="augment")
    augment_time_masks: int = _f(2, "specaugment/feature-mask: time masks per clip", group="augment")
    augment_time_width: int = _f(40, "specaugment: widest time mask, in 10 ms mel frames", group="augment")
    augment_time_ratio: float = _f(
        0.2, "specaugment: no time mask wider than this fraction of the clip", group="augment"
    )
    # ---- knowledge distillation (qaudio distill, or --teacher on train) ------------------------
    teacher: str | None = _f(
        None,
        "distill from this saved qaudio model (a directory or hub id): the student (--model) learns "
        "the teacher's token distributions on the target positions; the teacher never trains and is never saved",
        group="distill",
        metavar="DIR",
    )
    distill_alpha: float = _f(
        0.5,
        "with --teacher: loss = (1 - alpha) * cross-entropy on the references + alpha * T^2 * KL(teacher || student)",
        group="distill",
    )
    distill_temperature: float = _f(
        2.0, "with --teacher: the softmax temperature T of both distributions in the KL term", group="distill"
    )
    # ---- run, checkpoints, logs ---------------------------------------------------------------
    output_dir: str = _f(
        "runs/train", "run directory: config, metrics, checkpoints and the final model", group="run", metavar="DIR"
    )
    seed: int = _f(0, "seed for initialisation, data order and dropout", group="run")
    resume: str = _f(
        "auto",
        "auto = continue from the latest complete checkpoint in --output-dir if there is "
        "one; none = start fresh (refuses a directory with checkpoints); or a checkpoint "
        "directory",
        group="run",
        metavar="auto|none|DIR",
    )
    save_every: int = _f(500, "save a checkpoint every N optimizer steps (and at the end)", group="run")
    keep_checkpoints: int = _f(2, "keep the last K checkpoints", group="run")
    eval_every: int = _f(
        200, "compute the dev loss every N steps (and at the start and the end); 0 = only start and end", group="run"
    )
    # ---- dev scores: the learning curve of the headline metrics (qaudio/training/dev_scores.py) ----
    dev_scores: int = _f(
        0,
        "at each dev pass after step 0, decode up to N dev examples per task and language pair (greedy, as "
        "qaudio eval does) and score them with the task's headline metric: the learning curve of what the "
        "report measures (0: dev loss only; the decoding time is not in --max-minutes' plan)",
        group="run",
        metavar="N",
    )
    log_every: int = _f(10, "write a metrics line every N steps", group="run")
    num_workers: int = _f(0, "data-loading worker processes (0 = in the training process)", group="run")
    threads: int = _f(0, "torch CPU threads per process; 0 = CPU cores / local processes", group="run")
    ddp_find_unused: bool = _f(
        False, "DDP find_unused_parameters (needed only if some trainable parameter gets no gradient)", group="run"
    )
    tensorboard: bool = _f(True, "write TensorBoard event files (when tensorboard is installed)", group="run")
    progress: bool = _f(True, "show a progress bar", group="run")
    eta: bool = _f(
        True, "time a few batches before training (leaving no trace) and print the expected training time", group="run"
    )
    expected_step_s: float = _f(
        0.0,
        "the seconds per step this run was sized for (make demo sets it); a "
        "probed step much slower than this is reported with the expected wall time "
        "(0 = no check)",
        group="run",
    )
    plot: bool = _f(True, "write a loss-curve PNG per task at the end", group="run")
    log_batches: bool = _f(
        False,
        "debug: each process writes the ids of its examples per step and its final "
        "weight fingerprint to batches-rank<R>.jsonl",
        group="run",
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise ValueError(f"--{_flag(f.name)} is {value!r}; valid choices: {', '.join(choices)}")
        positive = {
            "lr": self.lr,
            "temperature": self.temperature,
            "grad_accum": self.grad_accum,
            "bucket_size": self.bucket_size,
            "max_bad_steps": self.max_bad_steps,
            "save_every": self.save_every,
            "keep_checkpoints": self.keep_checkpoints,
            "log_every": self.log_every,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"--{_flag(name)} must be > 0, got {value!r}")
        non_negative = {
            "max_steps": self.max_steps,
            "epochs": self.epochs,
            "max_minutes": self.max_minutes,
            "batch_size": self.batch_size,
            "batch_seconds": self.batch_seconds,
            "warmup": self.warmup,
            "weight_decay": self.weight_decay,
            "ctc_weight": self.ctc_weight,
            "grad_clip": self.grad_clip,
            "eval_every": self.eval_every,
            "num_workers": self.num_workers,
            "threads": self.threads,
            "max_dev_examples": self.max_dev_examples,
            "dev_scores": self.dev_scores,
            "expected_step_s": self.expected_step_s,
        }
        for name, value in non_negative.items():
            if not value >= 0:
                raise ValueError(f"--{_flag(name)} must be >= 0, got {value!r}")
        if self.batch_size == 0 and self.batch_seconds == 0:
            raise ValueError("--batch-size 0 needs --batch-seconds > 0 (a batch needs some limit)")
        if self.max_steps == 0 and self.epochs == 0 and self.max_minutes == 0:
            raise ValueError("nothing to train: set --max-steps, --epochs or --max-minutes")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            raise ValueError(f"AdamW betas must be in [0, 1), got ({self.adam_beta1}, {self.adam_beta2})")
        if self.lora_r is not None and self.lora_r <= 0:
            raise ValueError(f"--lora-r must be > 0, got {self.lora_r}")
        if not 0 <= self.distill_alpha <= 1:
            raise ValueError(f"--distill-alpha must be in [0, 1], got {self.distill_alpha!r}")
        if not self.distill_temperature > 0:
            raise ValueError(f"--distill-temperature must be > 0, got {self.distill_temperature!r}")
        if self.teacher is not None and not str(self.teacher).strip():
            raise ValueError("--teacher must name a saved qaudio model directory or hub id")
        parse_mix_weights(self.mix_weights)  # the form; the group names are checked once the data is read
        if not self.tasks.strip() or not self.recipes.strip():
            raise ValueError("--tasks and --recipes must not be empty")
        from .augmentation import AugmentSpec

        AugmentSpec.from_config(self)  # names, probabilities and ranges (the noise folder is read at start)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build from plain values (a YAML file, a checkpoint); unknown keys raise naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        normalised = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(normalised) - names)
        if unknown:
            raise ValueError(
                f"{where}: unknown training option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(names))}"
            )
        return cls(**normalised)


def _module_names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _same(value: Any) -> Any:
    return value


# The model flags: TrainConfig field -> (ModelConfig section, field, how the flag's text becomes the value).
MODEL_FLAGS: dict[str, tuple[str, str, Any]] = {
    "encoder_source": ("encoder", "source", _same),
    "llm_source": ("llm", "source", _same),
    "llm_tokenizer": ("llm", "tokenizer", _same),
    "projector": ("projector", "name", _same),
    "projector_stack": ("projector", "stack", _same),
    "projector_hidden": ("projector", "hidden", _same),
    "projector_queries": ("projector", "num_queries", _same),
    "projector_layers": ("projector", "qformer_layers", _same),
    "projector_heads": ("projector", "qformer_heads", _same),
    "train_encoder": ("trainable", "encoder", _same),
    "train_projector": ("trainable", "projector", _same),
    "train_llm": ("trainable", "llm", _same),
    "lora_r": ("trainable", "lora_r", _same),
    "lora_alpha": ("trainable", "lora_alpha", _same),
    "lora_dropout": ("trainable", "lora_dropout", _same),
    "lora_targets": ("trainable", "lora_targets", _module_names),
    "encoder_lora_targets": ("trainable", "encoder_lora_targets", _module_names),
}
# Where a model's parts are read from: a resume may point these at a moved copy of the same model.
SOURCE_FLAGS = ("encoder_source", "llm_source", "llm_tokenizer")


def model_overrides(cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """The model flags given, as ``{section: {field: value}}`` for :func:`qaudio.config.with_overrides`."""
    sections: dict[str, dict[str, Any]] = {}
    for name, (section, key, convert) in MODEL_FLAGS.items():
        value = getattr(cfg, name)
        if value is not None:
            sections.setdefault(section, {})[key] = convert(value)
    return sections


_flag = flags.flag_name


GROUP_TITLES = {
    "data": "data and task mixing",
    "model": "model and what trains",
    "optim": "optimisation",
    "cache": "frozen-encoder feature cache",
    "augment": "audio augmentation of training examples",
    "distill": "knowledge distillation from a teacher model",
    "run": "run directory, checkpoints and logs",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field, plus ``--config FILE`` for YAML overrides.

    Flags default to "not given" so that a YAML file's values are overridden only by flags
    the user typed; :func:`config_from_args` resolves the three layers.
    """
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="YAML file of option overrides (keys are the option names, with - or _)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration as YAML and exit")
    groups = {name: parser.add_argument_group(title) for name, title in GROUP_TITLES.items()}
    flags.add_arguments(parser, TrainConfig, given_only=True, groups=groups, show_default=True, bool_values=True)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist (expected a YAML file of training options)")
    with path.open(encoding="utf-8") as f:
        try:
            values = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of option: value, got {type(values).__name__}")
    return values


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the YAML file, then the flags given on the command line."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update({str(k).replace("-", "_"): v for k, v in load_yaml(args.config).items()})
    values.update({k: v for k, v in vars(args).items() if k in names})
    return TrainConfig.from_dict(values, where=args.config or "command line")


def to_yaml(values: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
