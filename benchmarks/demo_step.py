"""The demo preset's training step, variant against variant, as a fraction of the machine's peak.

    python -m benchmarks.demo_step [--precisions fp32,bf16] [--threads 2] [--json FILE]
    python -m benchmarks.train_throughput --demo        # the same

``make demo`` trains the ``demo`` preset from cached encoder outputs, so its step is: projector
-> slot filling -> a 4-layer Qwen3-style LLM -> head on target positions -> loss -> backward ->
clip -> AdamW. This script times exactly that step (the encoder is a random one of tiny.en's
width, never run: cached outputs stand in, as in training) on demo-like batches of 32 clips of
1.2-4.5 s, and prints for each precision and variant: ms per step, examples/s, the step's
achieved FLOP/s against the fp32 AND the bf16 matmul peak measured in this same process, the
share of the step spent in matrix products, and the speed-up against ``first-release`` (the
step as the first release ran it). Variants, each a switch of :mod:`qaudio.model.speed` or of
the optimizer:

``first-release``  transformers' modules as they come, torch's default (for-each) AdamW.
``fused-adamw``    AdamW with ``fused=True``: one kernel per step instead of ~10 ops per tensor.
``math-attention`` SDPA's math backend for training (the CPU flash-attention backward in bf16
                   was 10x its forward on a Xeon profile; the math backend's backward is matmuls).
``bf16-weights``   (bf16 only) the model held in bf16 with fp32 master weights in the optimizer,
                   instead of autocast casting fp32 weights at every op.
``qaudio``         what ``qaudio train`` does now (its defaults), for the before/after figure.

All variants start from the same weights and see the same batches; their losses are printed so
that a variant that changes the arithmetic beyond rounding shows. Speed is reported as ratios
and fractions of peaks measured in the same run, never as absolute targets.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from benchmarks import common, systems
from benchmarks.clips import vocabulary

BATCH = 32  # the demo's micro-batch
SECONDS = (1.2, 4.5)  # the synthetic corpus's clip lengths
WORDS_PER_S = 2.6  # read speech in the synthetic grammar
LR, BETAS, WEIGHT_DECAY, CLIP = 1e-3, (0.9, 0.98), 0.01, 1.0  # the demo recipe
VARIANTS = ("first-release", "fused-adamw", "math-attention", "bf16-weights", "qaudio")
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def demo_batches(model, processor, count: int, seed: int) -> list[dict]:
    """``count`` demo-like batches from cached-encoder-output stand-ins: (frames, 384) per clip."""
    rng = np.random.default_rng(seed)
    words = vocabulary()
    width = model.audio_tower.config.d_model
    prompt = common.asr_prompt()
    out = []
    for _ in range(count):
        seconds = rng.uniform(*SECONDS, size=BATCH)
        states = [
            torch.randn(int(s * 50), width, generator=torch.Generator().manual_seed(int(rng.integers(1 << 31))))
            for s in seconds
        ]  # Whisper: 50 encoder frames per second
        texts = [" ".join(rng.choice(words, size=max(1, round(s * WORDS_PER_S)))) for s in seconds]
        out.append(processor.prepare_from_features(states, [prompt] * BATCH, texts))
    return out


class MasterWeights:
    """A bf16 model trained through fp32 copies of its trainable weights (mixed precision without
    autocast): gradients are copied up, AdamW steps the copies, the copies are rounded back down."""

    def __init__(self, params: list[torch.nn.Parameter], fused: bool):
        self.params = params
        self.masters = [p.detach().float().clone().requires_grad_() for p in params]
        self.optimizer = torch.optim.AdamW(self.masters, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY, fused=fused)

    def step(self) -> None:
        for p, m in zip(self.params, self.masters, strict=True):
            m.grad = p.grad.float()
        torch.nn.utils.clip_grad_norm_(self.masters, CLIP)
        self.optimizer.step()
        with torch.no_grad():
            for p, m in zip(self.params, self.masters, strict=True):
                p.copy_(m)
        for p in self.params:
            p.grad = None


def make_step(base, variant: str, precision: str, device: torch.device):
    """A closure running one training step of ``variant`` on its own copy of ``base``."""
    from qaudio.model.speed import training_attention
    from qaudio.training.losses import output_loss

    model = copy.deepcopy(base).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    fused = variant in ("fused-adamw", "qaudio", "bf16-weights")
    math_attention = variant in ("math-attention", "qaudio")
    pure_bf16 = variant == "bf16-weights"
    if pure_bf16:
        model.to(torch.bfloat16)
        updater = MasterWeights(params, fused)
    else:
        optimizer = torch.optim.AdamW(params, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY, fused=fused)

    def step(batch: dict) -> float:
        attention = training_attention(device) if math_attention else contextlib.nullcontext()
        amp = common.autocast(device, precision if not pure_bf16 else "fp32")
        with attention, amp:
            loss = output_loss(model(**batch), "example")  # the mean of per-example mean losses
        loss.backward()
        if pure_bf16:
            updater.step()
        else:
            torch.nn.utils.clip_grad_norm_(params, CLIP)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def matmul_share(step, batch: dict) -> float:
    """The fraction of one step's CPU time spent inside matrix-product kernels (torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(batch)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / max(total, 1)


def measure(
    precision: str, variants: list[str], device: torch.device, steps: int, seed: int, preset: str = "demo"
) -> dict:
    from qaudio.config import resolve_model_config

    config = resolve_model_config(preset)
    # Cached encoder outputs stand in for the encoder, so a random encoder of tiny.en's shape serves.
    config = replace(config, encoder=replace(config.encoder, source="tiny-random"))
    texts = [" ".join(vocabulary()[i::7]) for i in range(7)]
    base, processor = systems.build_qaudio(config, texts, seed)
    batches = [common.to_device(b, device) for b in demo_batches(base, processor, steps + 2, seed)]
    runs = {v: make_step(base, v, precision, device) for v in variants}
    losses = {v: [round(run(b), 4) for b in batches[:2]] for v, run in runs.items()}  # warm-up
    seconds = dict.fromkeys(variants, 0.0)
    for batch in batches[2:]:  # round robin: a drift in the machine's speed hits every variant alike
        for v, run in runs.items():
            common.synchronize(device)
            t0 = time.perf_counter()
            run(batch)
            common.synchronize(device)
            seconds[v] += time.perf_counter() - t0
    flops = common.count_flops(lambda: runs[variants[0]](batches[2]))
    shares = {v: matmul_share(run, batches[2]) for v, run in runs.items()} if device.type == "cpu" else {}
    return {
        "precision": precision,
        "preset": preset,
        "flops_per_step": flops,
        "warmup_losses": losses,
        "seconds_per_step": {v: s / steps for v, s in seconds.items()},
        "matmul_share": shares,
    }


def report(results: list[dict], peaks: dict[str, float]) -> str:
    lines = []
    for r in results:
        base = r["seconds_per_step"]["first-release"]
        lines.append(f"\n{r['precision']}: {r['flops_per_step'] / 1e9:.1f} GFLOP per step of {BATCH} examples")
        lines.append(
            f"{'variant':<16} {'ms/step':>8} {'ex/s':>7} {'GFLOP/s':>8} {'% fp32 peak':>11} "
            f"{'% bf16 peak':>11} {'matmul share':>12} {'speed-up':>8}  warm-up losses"
        )
        for v, s in r["seconds_per_step"].items():
            achieved = r["flops_per_step"] / s
            share = r["matmul_share"].get(v)
            lines.append(
                f"{v:<16} {s * 1e3:>8.0f} {BATCH / s:>7.1f} {achieved / 1e9:>8.0f} "
                f"{100 * achieved / peaks['fp32']:>10.1f}% {100 * achieved / peaks['bf16']:>10.1f}% "
                f"{'' if share is None else f'{100 * share:.0f}%':>12} {base / s:>7.2f}x  "
                f"{r['warmup_losses'][v]}"
            )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant (default 6)")
    parser.add_argument("--device", default="cpu", choices=common.DEVICES)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="demo", help="model preset whose step is timed (tests use tiny)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo_step", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.resolve_device(args.device, "fp32")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; expected some of: {', '.join(VARIANTS)}")
    if "first-release" not in variants:  # every speed-up is a ratio against it
        parser.error(f"--variants must include first-release, the baseline of the speed-ups (got {args.variants})")
    info = common.machine_info(device)
    print(common.machine_line(info, args.threads), flush=True)
    peaks = {p: common.matmul_peak_flops(device, p) for p in ("fp32", "bf16")}
    print(
        f"matmul peak in this process: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s",
        flush=True,
    )
    results = []
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        if precision == "bf16" and device.type == "cpu" and peaks["bf16"] < peaks["fp32"]:
            print(
                f"\nbf16: skipped: this CPU has no native bf16 (its bf16 matmul peak, {peaks['bf16'] / 1e9:.1f} "
                f"GFLOP/s, is below fp32's); qaudio train's precision 'auto' runs fp32 here. Run this on a CPU "
                "with avx512_bf16 or AMX to measure the bf16 step.",
                flush=True,
            )
            continue
        wanted = [v for v in variants if precision == "bf16" or v != "bf16-weights"]
        results.append(measure(precision, wanted, device, args.steps, args.seed, args.preset))
        print(report(results[-1:], peaks), flush=True)
    if args.json:
        common.write_json(args.json, {"machine": info, "peaks": peaks, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
