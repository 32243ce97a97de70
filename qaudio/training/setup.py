"""Everything a training run builds before its first step: the accelerator, the resume point,
the data (recipes -> items of the asked tasks), the model, the task mixture and the collators.

:func:`build_run` returns a :class:`Run`; :mod:`qaudio.train` then runs the loop on it.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..hardware import cpu_has_bf16, usable_cores
from . import checkpoint as ckpt
from .augmentation import Augmenter, AugmentSpec, use_encoder_cache
from .bad_data import BadDataLog
from .batching import Collator
from .config import MODEL_FLAGS, SOURCE_FLAGS, TrainConfig, model_overrides, to_yaml
from .corpus import (
    Item,
    RecipeSpec,
    check_tasks_present,
    fit_to_window,
    load_items,
    parse_recipes,
    parse_tasks,
    tokenizer_texts,
)
from .mixing import MixtureSampler, mixing_groups, parse_mix_weights, pin_weights, task_weights

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..config import ModelConfig
    from ..model.audio_lm import AudioLM
    from .feature_cache import FeatureCache

# Options that fix the data order, the schedule or the model: a resumed run must keep them.
RESUME_INVARIANTS = (
    "tasks",
    "recipes",
    "train_split",
    "temperature",
    "mix_by",
    "mix_weights",
    "long_audio",
    "model",
    *[name for name in MODEL_FLAGS if name not in SOURCE_FLAGS],
    "batch_size",
    "batch_seconds",
    "grad_accum",
    "bucket_size",
    "seed",
    "lr",
    "schedule",
    "warmup",
    "min_lr_ratio",
    "loss_weighting",
    "ctc_weight",
    "cache_dtype",
    # what augmentation makes of each example: a resume must make the same audio
    "augment",
    "augment_tasks",
    "augment_noise_dir",
    "augment_snr_db",
    "augment_gain_db",
    "augment_speeds",
    "augment_freq_masks",
    "augment_freq_width",
    "augment_time_masks",
    "augment_time_width",
    "augment_time_ratio",
    "teacher",
    "distill_alpha",
    "distill_temperature",
)


# ---- processes, precision, threads -----------------------------------------------------------


def resolve_precision(precision: str) -> str:
    """fp32/bf16/fp16, with ``auto`` = bf16 where the hardware runs it fast, else fp32 (or fp16)."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"  # without bf16 units, CPU bf16 is emulated and slower


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    refuse_fsdp_on_cpu()
    precision = resolve_precision(cfg.precision)
    accelerator = Accelerator(
        mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision],
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.ddp_find_unused)],
    )
    refuse_sharding(accelerator)
    return accelerator


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def refuse_fsdp_on_cpu() -> None:
    """``accelerate launch --use_fsdp`` on CPU processes: say why it cannot work and what to run.

    accelerate (1.15) does not shard on CPUs: its FSDP plugin needs a GPU-like device to place
    parameters (with ``sync_module_states``, the launcher's default, it stops with "no available
    devices"), and its state sets up FSDP for GPU-like process groups only, so CPU processes would
    run plain data parallelism under the name of FSDP.
    """
    if _env_flag("ACCELERATE_USE_FSDP") and (_env_flag("ACCELERATE_USE_CPU") or not torch.accelerator.is_available()):
        raise ValueError(
            "FSDP was asked for (accelerate launch --use_fsdp) on CPU processes, but accelerate shards "
            "on GPUs (and other accelerators) only: on CPUs its FSDP plugin finds no device. On CPUs "
            "run data parallel instead: ACCELERATE_USE_CPU=true accelerate launch --multi_gpu "
            "--num_processes N ... (without --use_fsdp)"
        )


def refuse_sharding(accelerator: Accelerator) -> None:
    """FSDP and DeepSpeed ZeRO: refused at start, with the reason and the supported path."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        # Checkpoints are no obstacle any more (accelerate's save_state shards them); the rest of
        # the run is: the dev loss and the final save_pretrained use the unwrapped module, whose
        # weights are shards under FSDP and DeepSpeed ZeRO, and no sharded run was verified here.
        raise ValueError(
            f"qaudio train runs single-process or DDP; {kind.value}: its checkpoints would save "
            "(accelerate's save_state), but the dev loss and the final model export read the unwrapped "
            "module's weights, which are shards there. Launch with `accelerate launch --multi_gpu` "
            "(DDP): with a frozen encoder and a LoRA LLM every GPU holds the whole model"
        )


def set_threads(cfg: TrainConfig, local_processes: int) -> int:
    """torch CPU threads: --threads, or the cores this process may use / processes on this machine."""
    if cfg.threads:
        n = cfg.threads
    else:
        n = max(1, usable_cores() // max(1, local_processes))
    torch.set_num_threads(n)
    return n


# ---- resuming --------------------------------------------------------------------------------


def _saved_train_config(checkpoint: Path) -> dict:
    import yaml

    return yaml.safe_load((checkpoint / "train_config.yaml").read_text(encoding="utf-8"))


def with_saved_model_flags(cfg: TrainConfig, checkpoint: Path) -> TrainConfig:
    """On a resume, the model flags (and the distillation teacher) not given (None) take the checkpoint's values."""
    saved = _saved_train_config(checkpoint)
    omitted = {
        name: saved[name]
        for name in (*MODEL_FLAGS, "teacher")
        if getattr(cfg, name) is None and saved.get(name) is not None
    }
    return dataclasses.replace(cfg, **omitted) if omitted else cfg


def check_resume_compatible(cfg: TrainConfig, checkpoint: Path, state: dict, world: int) -> None:
    """Refuse to continue a checkpoint with options that would change what it was doing."""
    saved = _saved_train_config(checkpoint)
    changed = [
        f"{k}: {saved.get(k)!r} -> {getattr(cfg, k)!r}" for k in RESUME_INVARIANTS if saved.get(k) != getattr(cfg, k)
    ]
    if changed:
        raise ValueError(
            f"cannot resume {checkpoint} with changed options ({'; '.join(changed)}); use the same "
            "options, or a new --output-dir (or --resume none) to start over"
        )
    if state["world_size"] != world:
        raise ValueError(
            f"{checkpoint} was written by {state['world_size']} process(es); resume it with the same "
            f"number (now {world}), as the data stream is dealt out per process"
        )


def find_resume_checkpoint(cfg: TrainConfig, run_dir: Path) -> Path | None:
    """The checkpoint to continue from, per ``--resume`` (auto | none | a directory)."""
    if cfg.resume == "auto":
        return ckpt.latest_checkpoint(run_dir)
    if cfg.resume == "none":
        if ckpt.latest_checkpoint(run_dir) is not None:
            raise ValueError(
                f"{run_dir} holds checkpoints of an earlier run; pass another --output-dir, delete "
                "it, or --resume auto to continue it"
            )
        return None
    path = Path(cfg.resume)
    if (path / ckpt.STATE_FILE).is_file():
        return path
    latest = ckpt.latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(
            f"--resume {path}: neither a checkpoint (no {ckpt.STATE_FILE}) nor a run directory "
            f"with complete checkpoints under {path / ckpt.CHECKPOINTS}"
        )
    return latest


# ---- the model -------------------------------------------------------------------------------


def model_config_for(cfg: TrainConfig) -> ModelConfig:
    """The model preset/file with the model flags (sources, projector, --train-*, --lora-*) applied."""
    from ..config import resolve_model_config, with_overrides

    config = resolve_model_config(cfg.model)
    overrides = model_overrides(cfg)
    return with_overrides(config, **overrides) if overrides else config


def build_model(cfg: TrainConfig, texts: list[str] | None, tokenizer_dir: Path | None) -> AudioLM:
    """A fresh AudioLM from the config (seeded), or the saved model ``--model DIR`` to fine-tune.

    ``tokenizer_dir``: a tokenizer saved by an earlier run (resume), so the vocabulary is the
    one the checkpoint was trained with. A from-scratch student of a distillation (``--teacher``)
    takes the teacher's tokenizer the same way.
    """
    from ..config import with_overrides
    from ..model.audio_lm import AudioLM
    from .distill import student_tokenizer_dir

    config = model_config_for(cfg)
    torch.manual_seed(cfg.seed)  # every process builds the same initial weights
    if Path(cfg.model).is_dir():
        given = [f"--{name.replace('_', '-')}" for name in MODEL_FLAGS if getattr(cfg, name) is not None]
        if given:
            raise ValueError(
                f"--model {cfg.model} is a saved model: it is what its config.json says; "
                f"{', '.join(given)} apply to presets and model config files only"
            )
        return AudioLM.from_pretrained(cfg.model)
    tokenizer_dir = tokenizer_dir or student_tokenizer_dir(cfg, config)
    build_config = config if tokenizer_dir is None else with_overrides(config, llm={"tokenizer": str(tokenizer_dir)})
    model = AudioLM.build(build_config, tokenizer_texts=texts if build_config.llm.tokenizer is None else None)
    # The checkpoint's tokenizer only brings back the vocabulary; the saved configs keep the user's
    # llm.tokenizer, not a path into a checkpoint that --keep-checkpoints may delete.
    model.config = with_overrides(model.config, llm={"tokenizer": config.llm.tokenizer})
    return model


# ---- the data ----------------------------------------------------------------------------------


def dev_subset(items: list[Item], tasks: list[str], per_task: int) -> list[Item]:
    """The first ``per_task`` dev items of each training task (deterministic)."""
    kept: list[Item] = []
    counts: defaultdict[str, int] = defaultdict(int)
    for item in items:
        t = item.example.task
        if t in tasks and counts[t] < per_task:
            kept.append(item)
            counts[t] += 1
    return kept


def prepare_corpora(specs: list[RecipeSpec], accelerator: Accelerator) -> None:
    """Let each recipe make its corpus where it can (the synthetic one generates itself), once."""
    from ..specs import get_recipe

    with accelerator.main_process_first():
        if accelerator.is_main_process:
            for spec in specs:
                get_recipe(spec.name).prepare(spec.root)


def augmenter_for(cfg: TrainConfig, max_seconds: float, log: Callable[[str], None]) -> Augmenter | None:
    """The training examples' augmenter per ``--augment`` (None: none asked); a noise folder is read here."""
    spec = AugmentSpec.from_config(cfg)
    if not spec.probabilities:
        return None
    augment = Augmenter(spec, cfg.seed, max_seconds)
    log(f"qaudio train: {augment.describe()}")
    return augment


@dataclass
class Run:
    """What the loop trains on: the model, its data stream and the task mixture."""

    model: torch.nn.Module
    trainable: list[str]  # parameter names that train (the checkpoint saves these only)
    train_items: list[Item]
    dev_items: list[Item]
    tasks: list[str]  # the trained tasks, sorted (losses are reported per task)
    examples: int  # training examples over every task (an epoch)
    sampler: MixtureSampler
    collator: Collator
    dev_collator: Collator
    bad: BadDataLog
    stream: Any = None  # streamed shard sets: the StreamLoader (loader and checkpointed state)
    # --dev-scores draws its groups from these: every usable dev item, not only the dev loss's first
    # --max-dev-examples per task, so that each language pair of a task is scored (.dev_scores)
    score_items: list[Item] = dataclasses.field(default_factory=list)


def mixture_sampler(
    items: list, tasks: list[str], temperature: float, cfg: TrainConfig, accelerator: Accelerator
) -> MixtureSampler:
    """The seeded, per-process mixture sampler over ``items`` (weights at ``temperature`` over the
    tasks, or their language pairs with ``--mix-by pair``, and ``--mix-weights`` pinned; length-grouped
    batches as ``cfg`` sizes them): the manifest route's, and the streamed route's head."""
    group_indices: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(mixing_groups([item.example for item in items], cfg.mix_by)):
        group_indices[group].append(i)
    # A task listed m times lists each of its groups m times: its pairs are oversampled together.
    task_of = {group: items[members[0]].example.task for group, members in group_indices.items()}
    listed = [group for task in tasks for group in sorted(group_indices) if task_of[group] == task]
    weights = task_weights({g: len(v) for g, v in group_indices.items()}, listed, temperature)
    return MixtureSampler(
        dict(group_indices),
        pin_weights(weights, parse_mix_weights(cfg.mix_weights)),
        np.array([it.duration for it in items], dtype=np.float64),
        cfg.batch_size,
        cfg.batch_seconds,
        cfg.bucket_size,
        cfg.seed,
        accelerator.process_index,
        accelerator.num_processes,
    )


def build_run(
    cfg: TrainConfig,
    accelerator: Accelerator,
    run_dir: Path,
    resume_from: Path | None,
    precision: str,
    log: Callable[[str], None],
) -> Run:
    """Recipes -> items of the asked tasks -> model -> (feature cache) -> mixture sampler and collators."""
    from ..specs import get_task, registry
    from .streaming import build_stream_run, shard_locations

    locations = shard_locations(cfg.recipes)
    if locations:  # shard sets stream: nothing is listed up front
        return build_stream_run(cfg, accelerator, locations, resume_from, log)
    specs = parse_recipes(cfg.recipes, cfg.train_split, cfg.dev_split)
    prepare_corpora(specs, accelerator)
    keep_all = cfg.tasks.strip() == "all"
    listed = [get_task(t) for t in parse_tasks(cfg.tasks)] if not keep_all else []
    tasks = dict(registry("tasks")) if keep_all else {t.name: t for t in listed}
    bad = BadDataLog(strict=cfg.strict)
    style_config = model_config_for(cfg)
    style = style_config.prompt_style
    train_items = load_items(specs, "train", tasks, style, bad, keep_all)
    train_tasks = check_tasks_present(train_items, [t.name for t in listed] or ["all"], f"--recipes {cfg.recipes}")
    dev_items = load_items(specs, "dev", tasks, style, bad, keep_all) if cfg.dev_split != "none" else []

    texts = tokenizer_texts(train_items, style) if style_config.llm.source == "scratch" else None
    model = build_model(cfg, texts, resume_from / "tokenizer" if resume_from else None)
    processor = model.processor  # what the collators hold: no model in data-loader workers
    max_seconds = processor.max_audio_seconds
    train_items = fit_to_window(train_items, max_seconds, cfg.long_audio, bad)
    score_items = [
        it for it in fit_to_window(dev_items, max_seconds, cfg.long_audio, bad) if it.example.task in train_tasks
    ]
    dev_items = dev_subset(score_items, sorted(set(train_tasks)), cfg.max_dev_examples)
    if accelerator.is_main_process:
        model.config.save(run_dir / "model_config.json")

    augment = augmenter_for(cfg, max_seconds, log)
    cache: FeatureCache | None = None
    keys: Mapping[str, list[str] | None] = {"train": None, "dev": None}
    if use_encoder_cache(augment.spec if augment else None, cfg.cache_encoder, log):
        from .feature_cache import cache_for_training

        cache, keys, kept = cache_for_training(
            cfg, model, processor, accelerator, {"train": train_items, "dev": dev_items}, bad, precision
        )
        train_items, dev_items = kept["train"], kept["dev"]
        train_tasks = check_tasks_present(train_items, train_tasks, "after caching")

    sampler = mixture_sampler(train_items, train_tasks, cfg.temperature, cfg, accelerator)
    collator = Collator(
        processor,
        train_items,
        style,
        cfg.seed,
        max_seconds,
        cache,
        keys["train"],
        bad.skipped,
        augment,
        ctc=cfg.ctc_weight > 0,
    )
    dev_collator = Collator(processor, dev_items, style, cfg.seed, max_seconds, cache, keys["dev"], bad.skipped)
    log(
        f"qaudio train: {len(train_items)} training examples, {len(dev_items)} dev examples; "
        + ("tasks: " if cfg.mix_by == "task" else "tasks by language pair: ")
        + ", ".join(f"{g} {len(sampler.task_indices[g])} (p={sampler.weights[g]:.2f})" for g in sampler.tasks)
    )
    return Run(
        model,
        model.trainable_parameter_names(),
        train_items,
        dev_items,
        sorted(set(train_tasks)),
        sum(len(v) for v in sampler.task_indices.values()),
        sampler,
        collator,
        dev_collator,
        bad,
        score_items=score_items,
    )


def write_run_config(cfg: TrainConfig, run_dir: Path) -> None:
    """The run directory with the resolved config; stale half-saved checkpoints removed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.remove_stale_staging(run_dir)
    (run_dir / "train_config.yaml").write_text(to_yaml(cfg.to_dict()), encoding="utf-8")
