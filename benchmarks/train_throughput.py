"""Training throughput: qaudio against Qwen2AudioForConditionalGeneration, side by side, as ratios.

    python -m benchmarks.train_throughput [--size demo] [--batch-size 8] [--json FILE]
    python -m benchmarks.train_throughput --device cuda --dtype bf16   # on a GPU

For each duration mix (``short`` 1-5 s commands, ``librispeech`` 2-20 s read speech) and
each mode, both systems train on the same batches of the same clips, and the script prints
examples/s, audio seconds/s, peak memory, achieved FLOP/s as a fraction of a matmul peak
measured in the same process, and the qaudio/peer ratios:

``live``
    the encoder runs in every step (qaudio on each clip's real length; the peer on 30 s).
``cached``
    qaudio reads the frozen encoder's outputs from its feature cache
    (:mod:`qaudio.training.feature_cache`, built once before the timed steps and reported
    separately). The peer has no such cache, so its ``live`` figures are the comparison.

A step is: build the batch from raw audio (feature extraction and tokenisation, counted for
both systems) -> forward -> backward -> clip -> AdamW. Each (system, mode) runs in a fresh
subprocess (peak memory of one run cannot colour the next): warm-up steps, then timed steps,
then one untimed pass over the timed batches under ``FlopCounterMode`` for the FLOPs, then a
matmul peak. ``--profile`` adds a per-phase breakdown of both systems' steps and torch
profiler top operators (where the time goes).

See :mod:`benchmarks.systems` for what is held equal between the two systems.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks import common, systems
from benchmarks.clips import MIXES, batches_of, make_clips
from qaudio.audio import SAMPLE_RATE
from qaudio.profiling import measure

MODULE = "benchmarks.train_throughput"
MODES = ("live", "cached")
SYSTEMS = ("qaudio", "peer")
# Goals from the issue (qaudio/peer examples per second), reported against, never asserted.
TARGETS = {
    ("short", "live"): 2.0,
    ("librispeech", "live"): 1.3,
    ("short", "cached"): 5.0,
    ("librispeech", "cached"): 5.0,
}
LR, BETAS, WEIGHT_DECAY, CLIP_NORM = 1e-3, (0.9, 0.98), 0.01, 1.0  # qaudio's demo recipe, on both sides


# ---- One (system, mode) run, in its own process -----------------------------------------------


class System:
    """What a training step needs from one side: its module and how it builds a batch."""

    def __init__(self, name: str, module: torch.nn.Module, make_batch):
        self.name = name
        self.module = module
        self.make_batch = make_batch  # list[Clip] -> dict of CPU tensors


def _qaudio_system(
    spec: dict, texts: list[str], prompt: str, timed_clips, device, workdir: Path
) -> tuple[System, dict]:
    model, processor = systems.build_qaudio(systems.model_config(spec["size"], spec.get("stack")), texts, spec["seed"])
    model.to(device).train()
    extra = {"audio_tokens_per_second": _tokens_per_second(model)}
    if spec["mode"] == "live":
        return System(
            "qaudio",
            model,
            lambda clips: processor.prepare([c.samples for c in clips], [prompt] * len(clips), [c.text for c in clips]),
        ), extra
    cache, seconds = _fill_cache(model, processor, timed_clips, spec, device, workdir)
    extra["cache_build_s"] = seconds

    def from_cache(clips):
        states = [cache.get(c.key) for c in clips]  # (T'_i, D_enc) each, read from the shard files
        return processor.prepare_from_features(states, [prompt] * len(clips), [c.text for c in clips])

    return System("qaudio", model, from_cache), extra


def _tokens_per_second(model) -> float:
    from qaudio.model import audio_token_count

    return float(audio_token_count(30 * SAMPLE_RATE, model.config)) / 30.0


def _fill_cache(model, processor, clips, spec: dict, device, root: Path):
    """Encode every clip once into a FeatureCache under ``root`` (fp16 shards, qaudio.train's default),
    with the library's fill_cache (the encoder in the training precision)."""
    from qaudio.training.feature_cache import FeatureCache, encoder_identity, fill_cache

    cache = FeatureCache(root, encoder_identity(model, processor, spec["dtype"]), dtype="fp16")
    t0 = time.perf_counter()
    fill_cache(
        cache,
        processor,
        model,
        {c.key: c for c in clips},
        "bench",
        autocast=lambda: common.autocast(device, spec["dtype"]),
        load=lambda clip: clip.samples,
    )
    common.synchronize(device)
    return cache, time.perf_counter() - t0


def _peer_system(spec: dict, texts: list[str], prompt: str, device) -> tuple[System, dict]:
    if spec["mode"] != "live":
        raise ValueError("the peer has no encoder-feature cache; it runs in live mode only")
    peer = systems.build_peer(systems.model_config(spec["size"], spec.get("stack")), texts, spec["seed"])
    peer.model.to(device).train()
    peer.model.model.audio_tower.eval()  # frozen, as qaudio keeps its frozen encoder
    return System("peer", peer.model, lambda clips: systems.peer_inputs(peer, clips, prompt, train=True)), {
        "audio_tokens_per_second": systems.peer_audio_tokens(peer, 30.0) / 30.0
    }


def _optimizer(module: torch.nn.Module) -> torch.optim.Optimizer:
    from qaudio.training.optim import parameter_groups

    names = [n for n, p in module.named_parameters() if p.requires_grad]
    return torch.optim.AdamW(parameter_groups(module, names, WEIGHT_DECAY), lr=LR, betas=BETAS)


class PhaseClock:
    """Wall time per named phase (synchronised on CUDA), also marked for torch.profiler.

    Disabled (the default for timed steps), it does nothing: no GPU synchronisation is added
    inside a measured step.
    """

    def __init__(self, device: torch.device, enabled: bool = True):
        self.device = device
        self.enabled = enabled
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str):
        if not self.enabled:
            yield
            return
        common.synchronize(self.device)
        t0 = time.perf_counter()
        with torch.profiler.record_function(name):
            yield
        common.synchronize(self.device)
        self.seconds[name] += time.perf_counter() - t0

    def wrap(self, obj, attribute: str, name: str) -> None:
        """Time every call of ``obj.attribute`` (an instance attribute shadows the method)."""
        original = getattr(obj, attribute)

        def timed(*args, **kwargs):
            with self.phase(name):
                return original(*args, **kwargs)

        setattr(obj, attribute, timed)


def _instrument(system: System, clock: PhaseClock) -> None:
    """Time the encoder, projector and LLM body inside the forward pass of either system."""
    m = system.module
    if system.name == "qaudio":
        from qaudio.model.trainable import unwrap

        clock.wrap(m, "encode", "forward: encoder")
        clock.wrap(m.projector, "forward", "forward: projector")
        clock.wrap(unwrap(m.language_model).get_decoder(), "forward", "forward: LLM body")
    else:
        clock.wrap(m.model.audio_tower, "forward", "forward: encoder")
        clock.wrap(m.model.multi_modal_projector, "forward", "forward: projector")
        clock.wrap(m.model.language_model, "forward", "forward: LLM body")


def _step(
    system: System, optimizer, clips, device, dtype: str, clock: PhaseClock | None = None
) -> tuple[float, float, int]:
    """One training step from raw clips; returns (seconds building the batch, loss, LLM tokens)."""
    clock = clock or PhaseClock(device, enabled=False)
    t0 = time.perf_counter()
    with clock.phase("batch: features + tokens"):
        batch = common.to_device(system.make_batch(clips), device)
    common.synchronize(device)
    prepare = time.perf_counter() - t0
    with clock.phase("forward (all)"), common.autocast(device, dtype):
        loss = system.module(**batch).loss
    with clock.phase("backward"):
        loss.backward()
    with clock.phase("optimizer (clip + AdamW)"):
        params = [p for p in system.module.parameters() if p.requires_grad]
        torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return prepare, float(loss.detach()), int(batch["attention_mask"].sum())


def _flops(system: System, batches, device, dtype: str) -> int:
    """Model FLOPs (forward + backward) of the given batches; gradients are discarded."""
    total = 0
    for clips in batches:
        batch = common.to_device(system.make_batch(clips), device)

        def run(batch=batch):
            with common.autocast(device, dtype):
                loss = system.module(**batch).loss
            loss.backward()

        total += common.count_flops(run)
        system.module.zero_grad(set_to_none=True)
    return total


def worker(spec: dict) -> dict:
    """Build one system, train it on the spec's batches, and measure."""
    with tempfile.TemporaryDirectory(prefix="qaudio-bench-") as workdir:
        return _measure(spec, Path(workdir))


def _measure(spec: dict, workdir: Path) -> dict:
    device = common.resolve_device(spec["device"], spec["dtype"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    mix = MIXES[spec["mix"]]
    batch_size, warmup, steps = spec["batch_size"], spec["warmup"], spec["steps"]
    clips = make_clips(mix, batch_size * (warmup + steps), spec["seed"])
    batches = batches_of(clips, batch_size)
    texts = [c.text for c in clips]
    prompt = common.asr_prompt()
    if spec["system"] == "qaudio":
        system, extra = _qaudio_system(spec, texts, prompt, clips, device, workdir)
    else:
        system, extra = _peer_system(spec, texts, prompt, device)
    optimizer = _optimizer(system.module)
    clock = PhaseClock(device, enabled=bool(spec.get("profile")))
    step_seconds, prepare_seconds, losses, tokens = [], [], [], 0
    with measure("steps", device) as phase:  # the peak covers warm-up and timed steps, not building the model
        for clips_ in batches[:warmup]:
            _step(system, optimizer, clips_, device, spec["dtype"])
        if spec.get("profile"):
            _instrument(system, clock)
        for clips_ in batches[warmup:]:
            common.synchronize(device)
            t0 = time.perf_counter()
            prepare, loss, n = _step(system, optimizer, clips_, device, spec["dtype"], clock)
            common.synchronize(device)
            step_seconds.append(time.perf_counter() - t0)
            prepare_seconds.append(prepare)
            losses.append(loss)
            tokens += n
    peak_mib, before_mib = phase.peak_bytes / 2**20, phase.start_bytes / 2**20
    load = os.getloadavg()[0]

    timed = batches[warmup:]
    total_s, examples = sum(step_seconds), batch_size * len(timed)
    audio_s = sum(c.duration for b in timed for c in b)
    result = {
        "system": spec["system"],
        "mode": spec["mode"],
        "mix": spec["mix"],
        "batch_size": batch_size,
        "timed_steps": len(timed),
        "step_s": total_s / len(timed),
        "batch_build_share": sum(prepare_seconds) / total_s,
        "examples_per_s": examples / total_s,
        "audio_seconds_per_s": audio_s / total_s,
        "peak_memory_mib": peak_mib,
        "memory_before_steps_mib": before_mib,
        "memory_added_by_steps_mib": peak_mib - before_mib,
        "memory_method": phase.method,
        "llm_tokens_per_example": tokens / examples,
        "loss_last": losses[-1],
        "parameters": systems.count_parameters(system.module),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(load, 2),
        **extra,
    }
    if spec.get("profile"):
        result["phases_s_per_step"] = {k: v / len(timed) for k, v in clock.seconds.items()}
        result["top_ops"] = _top_ops(system, optimizer, timed[0], device, spec["dtype"])
    if spec.get("flops", True):
        flops = _flops(system, timed, device, spec["dtype"])
        peak = common.matmul_peak_flops(device, spec["dtype"])
        result.update(
            {
                "flops_per_step": flops / len(timed),
                "achieved_flops_per_s": flops / total_s,
                "matmul_peak_flops_per_s": peak,
                "fraction_of_matmul_peak": flops / total_s / peak,
            }
        )
    return result


def _top_ops(system: System, optimizer, clips, device, dtype: str, rows: int = 14) -> list[dict]:
    """torch.profiler's entries by self time over one step, as shares of the step.

    The step's own phases appear too: their self time is what runs outside torch operators
    (NumPy feature extraction, tokenisation, Python), which the operator list cannot show.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        _step(system, optimizer, clips, device, dtype, PhaseClock(device))
    attribute = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, attribute), reverse=True)
    total = sum(getattr(e, attribute) for e in events) or 1.0
    return [
        {"op": e.key, "ms": getattr(e, attribute) / 1000, "share": getattr(e, attribute) / total} for e in events[:rows]
    ]


# ---- The driver --------------------------------------------------------------------------------


def _runs(args) -> list[dict]:
    specs = []
    for mix in args.mixes:
        for system in SYSTEMS:
            for mode in MODES:
                if system == "peer" and mode != "live":
                    continue
                specs.append(
                    {
                        "system": system,
                        "mode": mode,
                        "mix": mix,
                        "size": args.size,
                        "stack": args.stack,
                        "batch_size": args.batch_size,
                        "warmup": args.warmup,
                        "steps": args.steps,
                        "device": args.device,
                        "dtype": args.dtype,
                        "seed": args.seed,
                        "threads": args.threads,
                        "flops": not args.no_flops,
                    }
                )
    return specs


def compare(results: list[dict]) -> list[dict]:
    """One object per (mix, mode): qaudio's and the peer's figures and their ratios."""
    by_key = {(r["system"], r["mix"], r["mode"]): r for r in results}
    modes = []
    for (system, mix, mode), ours in by_key.items():
        if system != "qaudio":
            continue
        peer = by_key.get(("peer", mix, "live"))
        ratios = {
            "examples_per_s": common.ratio(ours["examples_per_s"], peer and peer["examples_per_s"]),
            "audio_seconds_per_s": common.ratio(ours["audio_seconds_per_s"], peer and peer["audio_seconds_per_s"]),
            "peak_memory": common.ratio(ours["peak_memory_mib"], peer and peer["peak_memory_mib"]),
            "memory_added_by_steps": common.ratio(
                ours["memory_added_by_steps_mib"], peer and peer["memory_added_by_steps_mib"]
            ),
        }
        target = TARGETS.get((mix, mode))
        modes.append(
            {
                "mix": mix,
                "mode": mode,
                "qaudio": ours,
                "peer": peer,
                "peer_note": "the peer has no feature cache: its live figures" if mode == "cached" else "",
                "ratio": ratios,
                "target": {
                    "examples_per_s_ratio": target,
                    "met": None
                    if target is None or ratios["examples_per_s"] is None
                    else ratios["examples_per_s"] >= target,
                    "peak_memory_below_peer": None if ratios["peak_memory"] is None else ratios["peak_memory"] < 1,
                },
            }
        )
    return modes


COLUMNS = [
    ("mix", "mix", ""),
    ("mode", "mode", ""),
    ("system", "system", ""),
    ("examples_per_s", "examples/s", ".2f"),
    ("audio_seconds_per_s", "audio s/s", ".1f"),
    ("peak_memory_mib", "peak MiB", ".0f"),
    ("memory_added_by_steps_mib", "+steps MiB", ".0f"),
    ("step_s", "step s", ".2f"),
    ("batch_build_share", "batch build", ".0%"),
    ("achieved_gflops", "GFLOP/s", ".1f"),
    ("fraction_of_matmul_peak", "of peak", ".1%"),
    ("target", "target", ""),
]


def _times(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}x"


def table(modes: list[dict]) -> str:
    rows = []
    for m in modes:
        for side in ("qaudio", "peer"):
            r = m[side]
            if r is None:
                continue
            label = side if side == "qaudio" or m["mode"] == "live" else "peer (live)"
            rows.append(
                {
                    **r,
                    "mix": m["mix"],
                    "mode": m["mode"],
                    "system": label,
                    "achieved_gflops": r.get("achieved_flops_per_s") and r["achieved_flops_per_s"] / 1e9,
                }
            )
        ratio, target = m["ratio"], m["target"]
        verdict = None
        if target["examples_per_s_ratio"] is not None and ratio["examples_per_s"] is not None:
            verdict = f">={target['examples_per_s_ratio']:g}x {'met' if target['met'] else 'MISSED'}"
        rows.append(
            {
                "mix": m["mix"],
                "mode": m["mode"],
                "system": "ratio q/p",
                "examples_per_s": _times(ratio["examples_per_s"]),
                "audio_seconds_per_s": _times(ratio["audio_seconds_per_s"]),
                "peak_memory_mib": _times(ratio["peak_memory"]),
                "memory_added_by_steps_mib": _times(ratio["memory_added_by_steps"]),
                "target": verdict,
            }
        )
    return common.format_table(rows, COLUMNS)


def _profile_text(results: list[dict]) -> str:
    lines = []
    for r in results:
        phases = r.get("phases_s_per_step")
        if not phases:
            continue
        step = r["step_s"]
        lines.append(f"\n{r['system']} ({r['mix']}, {r['mode']}): {step:.3f} s per step")
        inner = sum(v for k, v in phases.items() if k.startswith("forward: "))
        for name, seconds in phases.items():
            lines.append(f"  {name:<28} {seconds:8.3f} s  {seconds / step:6.1%}")
        other = phases.get("forward (all)", 0.0) - inner
        lines.append(f"  {'forward: rest (embed, head, loss)':<28} {other:8.3f} s  {other / step:6.1%}")
        lines.append("  top operators (self time, one step):")
        for op in r.get("top_ops", []):
            lines.append(f"    {op['op']:<48} {op['ms']:9.1f} ms  {op['share']:6.1%}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size",
        default="demo",
        help="a qaudio preset whose sizes both systems are built at, with "
        "random weights (default: demo = Whisper tiny width 384 x 4 layers, LLM 256 x 4 layers)",
    )
    parser.add_argument("--mixes", default="short,librispeech", help=f"duration mixes: {', '.join(MIXES)}")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per step (default 8)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps (default 4)")
    parser.add_argument(
        "--stack",
        type=int,
        default=None,
        help="override qaudio's projector stack (2 = the peer's 25 audio tokens per second)",
    )
    parser.add_argument("--device", default="cpu", choices=common.DEVICES)
    parser.add_argument(
        "--dtype", default="fp32", choices=list(common.DTYPES), help="fp32, or bf16 autocast with fp32 master weights"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count and matmul peak")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also time each phase of the step and list the top operators (librispeech, live)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="instead: the demo preset's cached-feature step, variant against variant, as a fraction of "
        "the fp32 and bf16 matmul peaks (benchmarks.demo_step; its flags follow --demo)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)


def _check(args) -> None:
    args.mixes = [m.strip() for m in args.mixes.split(",") if m.strip()]
    unknown = [m for m in args.mixes if m not in MIXES]
    if unknown or not args.mixes:
        raise ValueError(f"--mixes {','.join(unknown) or '(empty)'}: expected some of {', '.join(MIXES)}")
    for name in ("batch_size", "steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be 0 or more, got {args.warmup}")
    systems.model_config(args.size, args.stack)  # a bad preset name or stack fails here, with the valid names
    common.resolve_device(args.device, args.dtype)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--demo" in argv:  # the demo preset's step, with benchmarks.demo_step's own flags
        from benchmarks import demo_step

        return demo_step.main([a for a in argv if a != "--demo"])
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_throughput", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.worker:
        import json

        common.write_json(args.result, worker(json.loads(args.worker)))
        return 0
    try:
        _check(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    info = common.machine_info(device)
    started = time.perf_counter()
    results = []
    for spec in _runs(args):
        print(f"running {spec['system']} {spec['mode']} on {spec['mix']} ...", file=sys.stderr, flush=True)
        results.append(common.run_worker(MODULE, spec))
    if args.profile:
        for system in SYSTEMS:
            spec = {
                **_runs(args)[0],
                "system": system,
                "mode": "live",
                "mix": "librispeech",
                "profile": True,
                "flops": False,
            }
            print(f"profiling {system} ...", file=sys.stderr, flush=True)
            results.append({**common.run_worker(MODULE, spec), "profile_run": True})
    measured = [r for r in results if not r.get("profile_run")]
    modes = compare(measured)
    elapsed = time.perf_counter() - started
    command = "python -m " + MODULE + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    print(
        f"\nqaudio vs Qwen2AudioForConditionalGeneration: training, size {args.size}, batch {args.batch_size}, "
        f"{args.steps} timed steps after {args.warmup} warm-up, {args.device} {args.dtype}"
    )
    print(common.machine_line(info, args.threads))
    print(table(modes))
    print(
        "step: batch built from raw audio (feature extraction counted for both) + forward + backward + clip + "
        "AdamW.\npeak: resident (CPU) or allocated (CUDA) high-water mark over the steps, in a fresh process per "
        "row; +steps: peak minus what was held before the first step (weights, libraries).\ncached: qaudio reads "
        "its encoder feature cache; the peer has none, so its live figures are the comparison."
    )
    profile = _profile_text([r for r in results if r.get("profile_run")])
    if profile:
        print(
            "\nwhere the time goes (phases per timed step; nested forward phases are part of 'forward (all)'):"
            + profile
        )
    warning = common.load_warning(info, results)
    if warning:
        print(warning)
    print(f"total time {elapsed:.0f} s")
    if args.json:
        common.write_json(
            args.json,
            {
                "benchmark": "train_throughput",
                "command": command,
                "machine": info,
                "elapsed_s": elapsed,
                "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "result", "json")},
                "modes": modes,
                "profile": [r for r in results if r.get("profile_run")],
                **({"warning": warning} if warning else {}),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
