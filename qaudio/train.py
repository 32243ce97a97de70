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
--mixed_precision no --dynamo_backend no -m qaudio.train ...``. Checkpoints are accelerate's
saved state (:mod:`qaudio.training.checkpoint`); a run resumes from its latest one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from .training import checkpoint as ckpt
from .training.bad_data import BadDataError, TrainingAborted
from .training.batching import Collator, make_loader
from .training.checkpoint import save_checkpoint, save_final_model
from .training.config import TrainConfig, config_from_args, to_yaml
from .training.config import add_arguments as _add_config_arguments
from .training.distill import setup_distiller
from .training.losses import LossMeter
from .training.metrics_log import MetricsLog, plot_loss_curves
from .training.optim import build_optimizer, build_scheduler
from .training.plan import plan_steps
from .training.setup import (
    build_model,
    build_run,
    check_resume_compatible,
    find_resume_checkpoint,
    make_accelerator,
    model_config_for,
    resolve_precision,
    set_threads,
    with_saved_model_flags,
    write_run_config,
)
from .training.state import TrainState
from .training.step import DEADLINE_SLACK, LogWindow, MicroBatches, Stepper, dev_pass, past_deadline
from .training.summary import describe, summarize_run
from .training.watchdog import NumericsWatchdog

__all__ = ["Collator", "TrainingAborted", "build_model", "model_config_for", "resolve_precision", "train"]

# ---- the training run ------------------------------------------------------------------------


def train(cfg: TrainConfig) -> Path:
    """Train per ``cfg``; returns the final model directory."""
    accelerator = make_accelerator(cfg)
    try:
        return _train(cfg, accelerator)
    finally:
        release_processes(accelerator)


def release_processes(accelerator: Accelerator) -> None:
    """Drop the run's DDP wrapper first, then the process group.

    Freeing a DDP wrapper frees its C++ reducer without releasing Python's GIL; if the reducer
    held the last reference to a gloo process group, that group's destructor joins worker threads
    that may still be freeing a just-finished collective's tensors, which needs the GIL: a
    deadlock (pytorch#56297), seen as a 2-process CPU run that hung at exit in 3 runs of 10. With
    the wrapper gone while the group is still registered, the group is last released by
    ``destroy_process_group``, whose binding does release the GIL.
    """
    import gc

    accelerator.free_memory()  # accelerate's references to the prepared (wrapped) model and optimizer
    gc.collect()  # and any cycle through the finished run's objects
    accelerator.end_training()  # trackers, then destroy_process_group


def _train(cfg: TrainConfig, accelerator: Accelerator) -> Path:
    is_main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    threads = set_threads(cfg, int(os.environ.get("LOCAL_WORLD_SIZE", world)))  # processes on this machine
    precision = resolve_precision(cfg.precision)
    run_dir = Path(cfg.output_dir)
    resume_from = find_resume_checkpoint(cfg, run_dir)
    header = ckpt.read_state(resume_from) if resume_from else None  # what must be known before building
    if resume_from:
        assert header is not None  # read just above
        cfg = with_saved_model_flags(cfg, resume_from)
        check_resume_compatible(cfg, resume_from, header, world)
    if is_main:
        write_run_config(cfg, run_dir)
    log = print if is_main else (lambda *a, **k: None)

    # ---- data, model, optimizer ------------------------------------------------------------------------
    run = build_run(cfg, accelerator, run_dir, resume_from, precision, log)
    distiller = setup_distiller(cfg, run.model, accelerator, precision, log)  # --teacher: loaded, never trained
    optimizer = build_optimizer(run.model, run.trainable, cfg)
    model, optimizer = accelerator.prepare(run.model, optimizer)
    model.train()
    state = TrainState(run.bad, LossMeter(run.tasks), world_size=world)
    metrics = MetricsLog(
        run_dir, enabled=is_main, tensorboard=cfg.tensorboard, resume_step=header["step"] if header else None
    )

    # ---- how long; then the checkpoint's state (weights, optimizer, schedule, TrainState, RNGs) ----------
    if header:
        state.max_steps = int(header["max_steps"])  # the schedule was laid out for this many
        if cfg.max_steps and cfg.max_steps != state.max_steps:
            log(
                f"qaudio train: note: resuming keeps the checkpoint's schedule of {state.max_steps} steps "
                f"(--max-steps {cfg.max_steps} ignored); start a new run to change it"
            )
    else:
        dev_s = dev_pass(model, accelerator, run, cfg, state, metrics, log)
        state.max_steps, state.probe_step_s = plan_steps(cfg, accelerator, run, optimizer, dev_s, log)
        state.planned_steps = state.max_steps
    scheduler = build_scheduler(optimizer, cfg, state.max_steps)
    ckpt.register(accelerator, run.trainable, scheduler, state, *([run.stream] if run.stream else []))
    if header:
        accelerator.load_state(str(resume_from))
        log(f"qaudio train: resuming from {resume_from} (step {state.step} of {state.max_steps})")
    else:
        from accelerate.utils import set_seed

        set_seed(cfg.seed + 1 + rank)  # per process from here on: dropout differs, the data stream does not
    # Making the loader's iterator draws from torch's RNG: kept aside, so that a resumed run's
    # restored RNG goes on exactly as the uninterrupted run's did.
    with torch.random.fork_rng(devices=[]):
        batches = iter(
            run.stream.loader()
            if run.stream
            # streamed shards: their own reader state
            else make_loader(run.sampler, state.position, run.collator, cfg.num_workers)
        )

    batch_log = (run_dir / f"batches-rank{rank}.jsonl").open("a" if header else "w") if cfg.log_batches else None
    watchdog = NumericsWatchdog(
        run_dir, run.train_items, rank, precision, cfg.loss_weighting, accelerator.device, cfg.ctc_weight
    )
    stepper = Stepper(
        model,
        optimizer,
        scheduler,
        accelerator,
        cfg,
        precision,
        MicroBatches(batches, run.collator, run.bad),
        watchdog,
        metrics,
        log,
        run_dir,
        batch_log,
        distiller,
    )
    bar = None
    if cfg.progress and is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=state.max_steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True)
    window = LogWindow(accelerator, metrics, scheduler, run.tasks, bar)
    state.run_t0 = run_t0 = time.perf_counter()
    deadline = run_t0 + cfg.max_minutes * 60 * DEADLINE_SLACK if cfg.max_minutes and not cfg.max_steps else None
    first_step = state.step

    # ---- the loop ----------------------------------------------------------------------------------------
    while state.step < state.max_steps:
        if not stepper.step(state):
            continue  # skipped: non-finite loss or gradient
        if state.step % cfg.log_every == 0 or state.step == state.max_steps:
            window.close(state, run_t0)
        if bar is not None:
            bar.update(1)
        if state.step < state.max_steps and state.step % cfg.log_every == 0 and past_deadline(deadline, accelerator):
            log(
                f"qaudio train: --max-minutes {cfg.max_minutes:g} reached at step {state.step} of {state.max_steps}: "
                "stopping early (the machine ran slower than the probe measured; the schedule did not finish)"
            )
            metrics.log({"kind": "deadline", "step": state.step, "planned_steps": state.max_steps})
            state.max_steps = state.step  # the final dev pass and checkpoint below run now
        if state.step == state.max_steps or (cfg.eval_every and state.step % cfg.eval_every == 0):
            dev_pass(model, accelerator, run, cfg, state, metrics, log)
        if state.step == state.max_steps or state.step % cfg.save_every == 0:
            save_checkpoint(run_dir, cfg, accelerator, model, state)
    if bar is not None:
        bar.close()

    # ---- the end: final model, summary, plots --------------------------------------------------------------
    seconds = time.perf_counter() - run_t0
    run_summary = summarize_run(state, accelerator, cfg, precision, threads)
    final = save_final_model(run_dir, cfg, accelerator, model, run_summary)
    if batch_log is not None:
        from .training.feature_cache import weights_fingerprint

        batch_log.write(
            json.dumps({"final_weights_sha256": weights_fingerprint(accelerator.unwrap_model(model))}) + "\n"
        )
        batch_log.close()
    if world > 1:  # every process skipped its own bad examples: one summary for the run
        from accelerate.utils import gather_object

        for bad_state in gather_object([run.bad.state_dict()]):
            run.bad.merge(bad_state)
    first_dev, last_dev = state.dev_history.get("0", {}), state.dev_history.get(str(state.step), {})
    metrics.log(
        {
            "kind": "end",
            "step": state.step,
            "seconds_this_run": seconds,
            "steps_this_run": state.step - first_step,
            "bad_data": dict(run.bad.counts),
            "dev_start": first_dev,
            "dev_end": last_dev,
            "threads": threads,
            "precision": precision,
            "processes": world,
            "model_dir": str(final),
        }
    )
    metrics.close()
    if is_main:
        log(run.bad.summary())
        for t in run.tasks:
            if t in first_dev and t in last_dev:
                log(f"qaudio train: dev loss {t}: {first_dev[t]:.3f} -> {last_dev[t]:.3f}")
        if cfg.plot:
            plot_loss_curves(run_dir)
        log(f"qaudio train: {describe(run_summary)}")
        log(f"qaudio train: model saved to {final}")
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
