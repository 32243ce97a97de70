"""Training: ``python -m qaudio.train``, ``accelerate launch -m qaudio.train`` and ``qaudio train``.

The loop is written out top to bottom (nanoGPT's train.py is the model); accelerate handles
devices, processes (DDP) and mixed precision. One step:

    micro-batches (temperature-mixed tasks, length-grouped) -> AudioLM.forward (loss sums, token counts)
    -> batch loss (divided once: by target tokens, or per example) -> backward (x grad_accum) -> clip -> AdamW
    -> warm-up + cosine schedule -> metrics (per-task loss, throughput) -> dev loss -> checkpoint

Defaults train the ``demo`` preset on the synthetic corpus (generated on first use) with the
recipe measured on a 2-core CPU (batch 32, AdamW lr 1e-3, betas (0.9, 0.98), weight decay
0.01, clip 1.0, 5% warm-up then cosine, bf16 autocast where the CPU supports it).

Multi-GPU: ``accelerate launch --multi_gpu --num_processes N -m qaudio.train ...`` runs DDP;
each process takes every N-th micro-batch of one shared, seeded stream. On a CPU machine:
``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --num_machines 1
--mixed_precision no --dynamo_backend no -m qaudio.train ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from .hardware import cpu_has_bf16, usable_cores
from .model.speed import training_attention
from .training import checkpoint as ckpt
from .training.bad_data import BadDataError, BadDataLog, TrainingAborted
from .training.batching import Batch, Collator, first_usable_batch, make_loader, to_device
from .training.budget import probe_step_seconds, steps_for_budget
from .training.config import (MODEL_FLAGS, SOURCE_FLAGS, TrainConfig, add_arguments as _add_config_arguments,
                              config_from_args, model_overrides, to_yaml)
from .training.corpus import (Item, check_tasks_present, fit_to_window, load_items, parse_recipes, parse_tasks,
                              tokenizer_texts)
from .training.losses import LossMeter, all_finite, evaluate_dev, output_loss
from .training.metrics_log import MetricsLog, plot_loss_curves
from .training.watchdog import NumericsWatchdog
from .training.mixing import MixtureSampler, task_weights
from .training.optim import build_optimizer, build_scheduler
from .training.summary import describe, learning_curve, machine, write_summary

SYNTHETIC = "synthetic"  # the recipe generated on first use when its folder is missing
DEADLINE_SLACK = 1.1  # --max-minutes: stop at 110% of the budget if the machine slows down after the probe
MODEL_DIR = "model"  # the final save_pretrained directory inside the run directory
SLOW_FACTOR = 1.3  # --expected-step-s: a probed step this much slower is worth a note


# ---- setup helpers -------------------------------------------------------------------------


def resolve_precision(precision: str) -> str:
    """fp32/bf16/fp16, with ``auto`` = bf16 where the hardware runs it fast, else fp32 (or fp16)."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"  # without bf16 units, CPU bf16 is emulated and slower


def make_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    from accelerate.utils import DistributedType

    precision = resolve_precision(cfg.precision)
    accelerator = Accelerator(
        mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision],
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.ddp_find_unused)],
    )
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        # Checkpoints here hold the trainable weights by name and one optimizer state; sharded
        # parameters and optimizer states would be saved wrongly, so refuse rather than corrupt.
        raise ValueError(f"qaudio train runs single-process or DDP; {accelerator.distributed_type.value} sharding "
                         "is not supported by its checkpoints yet. Launch with `accelerate launch --multi_gpu` (DDP): "
                         "with a frozen encoder and a LoRA LLM every GPU holds the whole model")
    return accelerator


# Options that fix the data order, the schedule or the model: a resumed run must keep them.
RESUME_INVARIANTS = ("tasks", "recipes", "train_split", "temperature", "long_audio", "model",
                     *[name for name in MODEL_FLAGS if name not in SOURCE_FLAGS], "batch_size",
                     "batch_seconds", "grad_accum", "bucket_size", "seed", "lr", "schedule", "warmup",
                     "min_lr_ratio", "loss_weighting", "cache_dtype")


def _saved_train_config(checkpoint: Path) -> dict:
    import yaml

    return yaml.safe_load((checkpoint / "train_config.yaml").read_text(encoding="utf-8"))


def with_saved_model_flags(cfg: TrainConfig, checkpoint: Path) -> TrainConfig:
    """On a resume, the model flags not given (None) take the checkpoint's values."""
    import dataclasses

    saved = _saved_train_config(checkpoint)
    omitted = {name: saved[name] for name in MODEL_FLAGS if getattr(cfg, name) is None and saved.get(name) is not None}
    return dataclasses.replace(cfg, **omitted) if omitted else cfg


def check_resume_compatible(cfg: TrainConfig, checkpoint: Path, state: dict, world: int) -> None:
    """Refuse to continue a checkpoint with options that would change what it was doing."""
    saved = _saved_train_config(checkpoint)
    changed = [f"{k}: {saved.get(k)!r} -> {getattr(cfg, k)!r}" for k in RESUME_INVARIANTS if saved.get(k) != getattr(cfg, k)]
    if changed:
        raise ValueError(f"cannot resume {checkpoint} with changed options ({'; '.join(changed)}); use the same "
                         "options, or a new --output-dir (or --resume none) to start over")
    if state["world_size"] != world:
        raise ValueError(f"{checkpoint} was written by {state['world_size']} process(es); resume it with the same "
                         f"number (now {world}), as the data stream is dealt out per process")


def set_threads(cfg: TrainConfig, local_processes: int) -> int:
    """torch CPU threads: --threads, or the cores this process may use / processes on this machine."""
    if cfg.threads:
        n = cfg.threads
    else:
        n = max(1, usable_cores() // max(1, local_processes))
    torch.set_num_threads(n)
    return n


def find_resume_checkpoint(cfg: TrainConfig, run_dir: Path) -> Path | None:
    """The checkpoint to continue from, per ``--resume`` (auto | none | a directory)."""
    if cfg.resume == "auto":
        return ckpt.latest_checkpoint(run_dir)
    if cfg.resume == "none":
        if ckpt.latest_checkpoint(run_dir) is not None:
            raise ValueError(f"{run_dir} holds checkpoints of an earlier run; pass another --output-dir, delete "
                             "it, or --resume auto to continue it")
        return None
    path = Path(cfg.resume)
    if (path / ckpt.STATE_FILE).is_file():
        return path
    latest = ckpt.latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"--resume {path}: neither a checkpoint (no {ckpt.STATE_FILE}) nor a run directory "
                                f"with complete checkpoints under {path / ckpt.CHECKPOINTS}")
    return latest


def ensure_synthetic_corpus(root: Path, accelerator) -> None:
    """Generate the synthetic corpus (size small, seed 0) when its folder is missing."""
    if (root / "train.jsonl").is_file():
        return
    with accelerator.main_process_first():
        if accelerator.is_main_process and not (root / "train.jsonl").is_file():
            from .synth.corpus import generate

            print(f"qaudio train: the synthetic corpus is missing at {root}; generating it (size small, seed 0; "
                  f"`qaudio synth` makes other sizes). Pass --recipes NAME:ROOT to train on another corpus.", flush=True)
            generate(root, size="small", seed=0, progress=True)


def model_config_for(cfg: TrainConfig):
    """The model preset/file with the model flags (sources, projector, --train-*, --lora-*) applied."""
    from .config import resolve_model_config, with_overrides

    config = resolve_model_config(cfg.model)
    overrides = model_overrides(cfg)
    return with_overrides(config, **overrides) if overrides else config


def build_model(cfg: TrainConfig, texts: list[str] | None, tokenizer_dir: Path | None):
    """A fresh AudioLM from the config (seeded), or the saved model ``--model DIR`` to fine-tune.

    ``tokenizer_dir``: a tokenizer saved by an earlier run (resume), so the vocabulary is the
    one the checkpoint was trained with.
    """
    from .config import with_overrides
    from .model.audio_lm import AudioLM

    config = model_config_for(cfg)
    torch.manual_seed(cfg.seed)  # every process builds the same initial weights
    if Path(cfg.model).is_dir():
        given = [f"--{name.replace('_', '-')}" for name in MODEL_FLAGS if getattr(cfg, name) is not None]
        if given:
            raise ValueError(f"--model {cfg.model} is a saved model: it is what its config.json says; "
                             f"{', '.join(given)} apply to presets and model config files only")
        return AudioLM.from_pretrained(cfg.model)
    build_config = config if tokenizer_dir is None else with_overrides(config, llm={"tokenizer": str(tokenizer_dir)})
    model = AudioLM.build(build_config, tokenizer_texts=texts if build_config.llm.tokenizer is None else None)
    # The checkpoint's tokenizer only brings back the vocabulary; the saved configs keep the user's
    # llm.tokenizer, not a path into a checkpoint that --keep-checkpoints may delete.
    model.config = with_overrides(model.config, llm={"tokenizer": config.llm.tokenizer})
    return model


def eta_message(max_steps: int, step_s: float, dev_s: float, cfg: TrainConfig) -> str:
    """The expected training time, said up front; and plainly, when this machine is slower than the
    run was sized for (``--expected-step-s``), that the result will be the same, only later."""
    passes = 2 + (max_steps // cfg.eval_every if cfg.eval_every else 0)
    minutes = (max_steps * step_s + passes * dev_s) / 60
    text = (f"qaudio train: {max_steps} steps at {step_s:.3f} s per step (probed) + {passes} dev passes: "
            f"about {minutes:.1f} min of training")
    if cfg.expected_step_s and step_s > SLOW_FACTOR * cfg.expected_step_s:
        text += (f"\nqaudio train: note: this machine is {step_s / cfg.expected_step_s:.1f}x slower than this run "
                 f"was sized for ({cfg.expected_step_s:.3f} s per step): it trains the same {max_steps} steps, so the "
                 "model comes out the same, only later. Another job sharing the cores is the usual cause")
    return text


def dev_subset(items: list[Item], tasks: list[str], per_task: int) -> list[Item]:
    """The first ``per_task`` dev items of each training task (deterministic)."""
    kept, counts = [], defaultdict(int)
    for item in items:
        t = item.example.task
        if t in tasks and counts[t] < per_task:
            kept.append(item)
            counts[t] += 1
    return kept


# ---- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(run_dir: Path, cfg: TrainConfig, accelerator, model, optimizer, scheduler,
                    trainable: list[str], state: dict) -> Path | None:
    """Write a complete checkpoint atomically; every process saves its RNG state into it."""
    step = state["step"]
    staging = run_dir / ckpt.CHECKPOINTS / f".tmp-{ckpt.checkpoint_name(step)}"
    if accelerator.is_main_process:
        staging = ckpt.staging_dir(run_dir, step)
        unwrapped = accelerator.unwrap_model(model)
        ckpt.save_trainable(unwrapped, trainable, staging / ckpt.TRAINABLE_FILE)
        torch.save(optimizer.state_dict(), staging / ckpt.OPTIMIZER_FILE)
        torch.save(scheduler.state_dict(), staging / ckpt.SCHEDULER_FILE)
        (staging / "train_config.yaml").write_text(to_yaml(cfg.to_dict()), encoding="utf-8")
        unwrapped.config.save(staging / "model_config.json")
        unwrapped.processor.tokenizer.save_pretrained(str(staging / "tokenizer"))
    accelerator.wait_for_everyone()
    ckpt.save_rng(staging, accelerator.process_index)
    accelerator.wait_for_everyone()
    final = None
    if accelerator.is_main_process:
        final = ckpt.commit(staging, state, cfg.keep_checkpoints)
    accelerator.wait_for_everyone()
    return final


def save_final_model(run_dir: Path, cfg: TrainConfig, accelerator, model, summary: dict) -> Path:
    """The trained model as a save_pretrained directory (written aside, then renamed into place),
    with the run's config and its summary (``training.json``: steps, examples, time, learning curve)."""
    final = run_dir / MODEL_DIR
    if accelerator.is_main_process:
        tmp = run_dir / f".tmp-{MODEL_DIR}"
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.unwrap_model(model).save_pretrained(str(tmp))
        (tmp / "train_config.yaml").write_text(to_yaml(cfg.to_dict()), encoding="utf-8")
        write_summary(tmp, summary)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    accelerator.wait_for_everyone()
    return final


# ---- the training run ------------------------------------------------------------------------


def train(cfg: TrainConfig) -> Path:
    """Train per ``cfg``; returns the final model directory."""
    accelerator = make_accelerator(cfg)
    is_main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    threads = set_threads(cfg, int(os.environ.get("LOCAL_WORLD_SIZE", world)))  # processes on this machine
    precision = resolve_precision(cfg.precision)
    run_dir = Path(cfg.output_dir)
    resume_from = find_resume_checkpoint(cfg, run_dir)
    resumed_state = ckpt.read_state(resume_from) if resume_from else None
    if resume_from:
        cfg = with_saved_model_flags(cfg, resume_from)
        check_resume_compatible(cfg, resume_from, resumed_state, world)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale_staging(run_dir)
        (run_dir / "train_config.yaml").write_text(to_yaml(cfg.to_dict()), encoding="utf-8")
    log = print if is_main else (lambda *a, **k: None)

    # ---- data: recipes -> items of the tasks asked for -------------------------------------------
    specs = parse_recipes(cfg.recipes, cfg.train_split, cfg.dev_split)
    for spec in specs:
        if spec.name == SYNTHETIC:
            ensure_synthetic_corpus(spec.root, accelerator)
    from .specs import get_task

    listed = [get_task(t) for t in parse_tasks(cfg.tasks)] if cfg.tasks.strip() != "all" else None
    wanted = {t.name: t for t in listed} if listed else None
    bad = BadDataLog(strict=cfg.strict)
    style_config = model_config_for(cfg)
    style = style_config.prompt_style
    train_items = load_items(specs, "train", wanted, style, bad)
    train_tasks = check_tasks_present(train_items, [t.name for t in listed] if listed else ["all"],
                                      f"--recipes {cfg.recipes}")
    dev_items = load_items(specs, "dev", wanted, style, bad) if cfg.dev_split != "none" else []

    # ---- model ------------------------------------------------------------------------------------
    texts = tokenizer_texts(train_items, style) if style_config.llm.source == "scratch" else None
    model = build_model(cfg, texts, resume_from / "tokenizer" if resume_from else None)
    trainable = model.trainable_parameter_names()
    processor = model.processor  # what the collators hold: no model in data-loader workers
    max_seconds = processor.max_audio_seconds
    train_items = fit_to_window(train_items, max_seconds, cfg.long_audio, bad)
    dev_items = dev_subset(fit_to_window(dev_items, max_seconds, cfg.long_audio, bad), sorted(set(train_tasks)),
                           cfg.max_dev_examples)
    if is_main:
        model.config.save(run_dir / "model_config.json")

    cache, keys = None, {"train": None, "dev": None}
    if cfg.cache_encoder:
        from .training.feature_cache import cache_for_training

        cache, keys, kept = cache_for_training(cfg, model, processor, accelerator,
                                               {"train": train_items, "dev": dev_items}, bad, precision)
        train_items, dev_items = kept["train"], kept["dev"]
        train_tasks = check_tasks_present(train_items, train_tasks, "after caching")

    task_indices: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(train_items):
        task_indices[item.example.task].append(i)
    weights = task_weights({t: len(v) for t, v in task_indices.items()}, train_tasks, cfg.temperature)
    durations = np.array([it.duration for it in train_items], dtype=np.float64)
    sampler = MixtureSampler(dict(task_indices), weights, durations, cfg.batch_size, cfg.batch_seconds,
                             cfg.bucket_size, cfg.seed, rank, world)
    tasks = sorted(weights)
    if resumed_state:
        bad.load_state_dict(resumed_state["bad_data"])
    collator = Collator(processor, train_items, style, cfg.seed, max_seconds, cache, keys["train"], bad.skipped)
    dev_collator = Collator(processor, dev_items, style, cfg.seed, max_seconds, cache, keys["dev"], bad.skipped)
    log(f"qaudio train: {len(train_items)} training examples, {len(dev_items)} dev examples; tasks: "
        + ", ".join(f"{t} {len(task_indices[t])} (p={weights[t]:.2f})" for t in tasks))

    # ---- optimizer, accelerate -------------------------------------------------------------------------
    optimizer = build_optimizer(model, trainable, cfg)
    if resume_from:
        ckpt.load_trainable(model, trainable, resume_from / ckpt.TRAINABLE_FILE)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    # ---- logs and the dev loss ---------------------------------------------------------------------------
    step = int(resumed_state["step"]) if resumed_state else 0
    metrics = MetricsLog(run_dir, enabled=is_main, tensorboard=cfg.tensorboard,
                         resume_step=step if resumed_state else None)
    batch_log = (run_dir / f"batches-rank{rank}.jsonl").open("a" if resumed_state else "w") if cfg.log_batches else None
    dev_history = dict(resumed_state.get("dev_history", {})) if resumed_state else {}
    # What this process has trained on so far, over every resume: the run's summary reports it.
    seen = {k: (resumed_state or {}).get("seen", {}).get(k, 0) for k in ("examples", "audio_seconds", "train_seconds")}

    def run_dev(at_step: int) -> float:
        """Log the per-task dev loss; returns the seconds it took."""
        if not dev_items:
            return 0.0
        t0 = time.perf_counter()
        losses = evaluate_dev(model, accelerator, dev_collator, dev_items, tasks, cfg.batch_size, cfg.loss_weighting)
        dev_history[str(at_step)] = losses
        metrics.log({"kind": "dev", "step": at_step, "task_loss": losses,
                     "loss": float(np.mean(list(losses.values()))) if losses else float("nan")})
        log(f"qaudio train: step {at_step} dev loss " + ", ".join(f"{t} {v:.3f}" for t, v in losses.items()))
        return time.perf_counter() - t0

    dev_seconds = 0.0 if resumed_state else run_dev(0)

    # ---- how long ---------------------------------------------------------------------------------
    per_step = cfg.grad_accum * world  # global micro-batches per optimizer step
    step_s = resumed_state.get("probe_step_s") if resumed_state else None
    if resumed_state:
        max_steps = int(resumed_state["max_steps"])  # the schedule was laid out for this many
        if cfg.max_steps and cfg.max_steps != max_steps:
            log(f"qaudio train: note: resuming keeps the checkpoint's schedule of {max_steps} steps "
                f"(--max-steps {cfg.max_steps} ignored); start a new run to change it")
    elif cfg.max_steps:
        max_steps = cfg.max_steps
    elif cfg.max_minutes:
        step_s = probe_step_seconds(model, accelerator, collator, sampler, optimizer, cfg)
        max_steps = steps_for_budget(cfg.max_minutes * 60, step_s, dev_seconds, cfg.eval_every)
        if world > 1:  # timings differ per process; all must stop at the same step
            from accelerate.utils import broadcast_object_list

            max_steps = broadcast_object_list([max_steps])[0]
        log(f"qaudio train: --max-minutes {cfg.max_minutes:g}: {step_s:.3f} s per step, {dev_seconds:.1f} s per dev "
            f"pass -> {max_steps} steps")
    else:
        examples = sum(len(v) for v in task_indices.values())
        max_steps = max(1, math.ceil(cfg.epochs * examples / (sampler.mean_batch_examples() * per_step)))
    if step_s is None and not resumed_state and cfg.eta:
        step_s = probe_step_seconds(model, accelerator, collator, sampler, optimizer, cfg)
    if step_s is not None and not resumed_state:
        log(eta_message(max_steps, step_s, dev_seconds, cfg))
    scheduler = build_scheduler(optimizer, cfg, max_steps)

    position, meter_state = 0, None
    if resumed_state:
        optimizer.load_state_dict(torch.load(resume_from / ckpt.OPTIMIZER_FILE, weights_only=True))
        scheduler.load_state_dict(torch.load(resume_from / ckpt.SCHEDULER_FILE, weights_only=True))
        position = int(resumed_state["position"])
        meter_state = resumed_state.get("window")
        log(f"qaudio train: resuming from {resume_from} (step {step} of {max_steps})")

    # The loader first: creating its iterator draws from torch's RNG, which must not shift the
    # state restored below (a resumed run would diverge from an uninterrupted one).
    batches = iter(make_loader(sampler, position, collator, cfg.num_workers))
    # Seeds per process from here on (dropout differs across processes; the data stream does not).
    if resumed_state:
        ckpt.load_rng(resume_from, rank)
    else:
        from accelerate.utils import set_seed

        set_seed(cfg.seed + 1 + rank)

    # A process whose micro-batch held only bad data runs a usable batch with weight 0, so every
    # process makes the same forward/backward calls (DDP needs that) and the stream stays aligned.
    fallback: Batch | None = None
    meter = LossMeter(tasks, **(meter_state or {}))
    bad_in_a_row = 0
    watchdog = NumericsWatchdog(run_dir, train_items, rank, precision, cfg.loss_weighting, accelerator.device)
    window_t0 = time.perf_counter()
    run_t0 = time.perf_counter()
    steps_this_run = 0
    bar = None
    if cfg.progress and is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)

    # The probe's estimate holds on a quiet machine; if other work slows this one down later, the
    # run stops at the deadline (final dev pass and save included) instead of overrunning it.
    deadline = run_t0 + cfg.max_minutes * 60 * DEADLINE_SLACK if cfg.max_minutes and not cfg.max_steps else None
    stopped_early, planned_steps = False, max_steps

    while step < max_steps:
        # ---- one optimizer step: grad_accum micro-batches, forward + backward each ----------------------
        step_losses, skipped, step_batches = [], False, []
        for micro in range(cfg.grad_accum):
            batch: Batch = next(batches)
            for item in batch.bad:
                bad.record(item)  # raises BadDataError in --strict mode
            weight = 1.0
            if batch.inputs is None:
                if fallback is None:
                    fallback = first_usable_batch(collator, len(train_items), bad)
                batch, weight = fallback, 0.0
            elif fallback is None:
                fallback = batch
            if batch_log is not None and weight:
                batch_log.write(json.dumps({"step": step + 1, "micro": micro, "ids": batch.ids}) + "\n")
            step_batches.append(batch)  # replayed by the watchdog if the step goes non-finite
            inputs = to_device(batch.inputs, accelerator.device)
            sync = micro == cfg.grad_accum - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                with training_attention(accelerator.device):  # on CPU: SDPA's math backend (qaudio.model.speed)
                    out = model(**inputs)  # loss_sum, target_tokens: (B,) each
                loss = output_loss(out, cfg.loss_weighting) * weight
                if not all_finite(loss, accelerator):
                    skipped = True
                    break
                accelerator.backward(loss / cfg.grad_accum)
            if weight:
                meter.add(batch.tasks, out.loss_sum.detach().float().cpu(), out.target_tokens.cpu())
                meter.extra["audio_seconds"] += batch.audio_seconds
                meter.extra["examples"] += len(batch.ids)
                seen["examples"] += len(batch.ids)
                seen["audio_seconds"] += batch.audio_seconds
                step_losses.append(loss.item())

        grad_norm = float("nan")
        if not skipped:
            params = [p for p in model.parameters() if p.requires_grad]
            if cfg.grad_clip > 0:
                grad_norm = float(accelerator.clip_grad_norm_(params, cfg.grad_clip))
            else:
                grad_norm = float(torch.linalg.vector_norm(torch.stack(
                    [p.grad.detach().float().norm() for p in params if p.grad is not None])))
            skipped = not math.isfinite(grad_norm) and precision != "fp16"  # fp16: the scaler skips by itself
        position += per_step
        if skipped:
            optimizer.zero_grad(set_to_none=True)
            bad_in_a_row += 1
            metrics.log({"kind": "skip", "step": step, "position": position, "grad_norm": grad_norm,
                         "reason": "non-finite loss or gradient"})
            log(f"qaudio train: step {step + 1}: non-finite loss or gradient; step skipped ({bad_in_a_row} in a row)")
            log(f"qaudio train: {watchdog.message(watchdog.diagnose(model, step_batches, step + 1))}")
            if bad_in_a_row >= cfg.max_bad_steps:
                last = ckpt.latest_checkpoint(run_dir)
                raise TrainingAborted(
                    f"{bad_in_a_row} non-finite losses in a row at step {step + 1}: training diverged or the data "
                    f"is broken. The last good checkpoint is {last or '(none saved yet)'}; lower --lr, use "
                    f"--precision fp32, or check the data, then resume from it")
            continue
        bad_in_a_row = 0
        optimizer.step()
        if not accelerator.optimizer_step_was_skipped:  # fp16 overflow: the schedule waits too
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        steps_this_run += 1
        meter.extra["loss"] += float(np.mean(step_losses)) if step_losses else 0.0
        meter.extra["steps"] += 1
        meter.extra["grad_norm"] += grad_norm

        # ---- logs ----------------------------------------------------------------------------------------
        if step % cfg.log_every == 0 or step == max_steps:
            task_loss, task_examples, sums = meter.reduce(accelerator)
            elapsed = time.perf_counter() - window_t0
            steps_in_window = max(sums.get("steps", 0) / world, 1)
            record = {
                "kind": "train", "step": step, "position": position,
                "loss": sums.get("loss", 0.0) / world / steps_in_window,
                "task_loss": task_loss,
                "task_examples": task_examples,
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": sums.get("grad_norm", 0.0) / world / steps_in_window,
                "examples_per_s": sums.get("examples", 0.0) / elapsed,
                "audio_s_per_s": sums.get("audio_seconds", 0.0) / elapsed,
                "elapsed_s": time.perf_counter() - run_t0,
            }
            metrics.log(record)
            if bar is not None:
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}",
                                audio_s_s=f"{record['audio_s_per_s']:.0f}")
            meter = LossMeter(tasks)
            window_t0 = time.perf_counter()
        if bar is not None:
            bar.update(1)

        if deadline is not None and step < max_steps and step % cfg.log_every == 0:
            late = time.perf_counter() > deadline
            if world > 1:  # all processes must stop at the same step
                from accelerate.utils import broadcast_object_list

                late = broadcast_object_list([late])[0]
            if late:
                log(f"qaudio train: --max-minutes {cfg.max_minutes:g} reached at step {step} of {max_steps}: "
                    "stopping early (the machine ran slower than the probe measured; the schedule did not finish)")
                metrics.log({"kind": "deadline", "step": step, "planned_steps": max_steps})
                stopped_early, planned_steps = True, max_steps
                max_steps = step  # the final dev pass and checkpoint below run now

        # ---- dev loss, checkpoint ----------------------------------------------------------------------------
        if step == max_steps or (cfg.eval_every and step % cfg.eval_every == 0):
            run_dev(step)
        if step == max_steps or step % cfg.save_every == 0:
            seen_now = {**seen, "train_seconds": seen["train_seconds"] + time.perf_counter() - run_t0}
            state = {"step": step, "position": position, "max_steps": max_steps, "bad_data": bad.state_dict(),
                     "window": meter.state_dict(), "dev_history": dev_history, "world_size": world,
                     "time": time.time(), "seen": seen_now, "probe_step_s": step_s}
            save_checkpoint(run_dir, cfg, accelerator, model, optimizer, scheduler, trainable, state)

    if bar is not None:
        bar.close()

    # ---- the end: final model, summary, plots --------------------------------------------------------------
    seconds = time.perf_counter() - run_t0
    totals = dict(seen, train_seconds=seen["train_seconds"] + seconds)
    if world > 1:  # every process counted its own examples
        from accelerate.utils import gather_object

        per_process = gather_object([totals])
        totals = {k: sum(t[k] for t in per_process) for k in ("examples", "audio_seconds")} | {
            "train_seconds": max(t["train_seconds"] for t in per_process)}
    run_summary = {"steps": step, "planned_steps": planned_steps,
                   "stopped_early": stopped_early, "examples_seen": int(totals["examples"]),
                   "audio_seconds_seen": round(totals["audio_seconds"], 1),
                   "train_seconds": round(totals["train_seconds"], 1), "probe_step_s": step_s,
                   "precision": precision, "threads": threads, "processes": world, "machine": machine(),
                   "batch_size": cfg.batch_size, "seed": cfg.seed, "tasks": cfg.tasks,
                   "learning_curve": learning_curve(dev_history)}
    final = save_final_model(run_dir, cfg, accelerator, model, run_summary)
    if batch_log is not None:
        from .training.feature_cache import weights_fingerprint

        batch_log.write(json.dumps({"final_weights_sha256": weights_fingerprint(accelerator.unwrap_model(model))}) + "\n")
        batch_log.close()
    if world > 1:  # every process skipped its own bad examples: one summary for the run
        from accelerate.utils import gather_object

        for state in gather_object([bad.state_dict()]):
            bad.merge(state)
    first_dev = dev_history.get("0", {})
    last_dev = dev_history.get(str(step), {})
    summary = {"kind": "end", "step": step, "seconds_this_run": seconds, "steps_this_run": steps_this_run,
               "bad_data": dict(bad.counts), "dev_start": first_dev, "dev_end": last_dev, "threads": threads,
               "precision": precision, "processes": world, "model_dir": str(final)}
    metrics.log(summary)
    metrics.close()
    if is_main:
        log(bad.summary())
        for t in tasks:
            if t in first_dev and t in last_dev:
                log(f"qaudio train: dev loss {t}: {first_dev[t]:.3f} -> {last_dev[t]:.3f}")
        if cfg.plot:
            plot_loss_curves(run_dir)
        log(f"qaudio train: {describe(run_summary)}")
        log(f"qaudio train: model saved to {final}")
    accelerator.end_training()
    return final


# ---- command line ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config_arguments(parser)


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.print_config:
        print(to_yaml(cfg.to_dict()), end="")
        return 0
    try:
        train(cfg)
    except (BadDataError, TrainingAborted) as e:
        print(f"qaudio train: error: {e}", file=sys.stderr)
        return 3
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qaudio.train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return main(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"qaudio train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
