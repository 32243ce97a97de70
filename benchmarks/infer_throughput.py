"""Inference throughput: qaudio against Qwen2AudioForConditionalGeneration, side by side, as ratios.

    python -m benchmarks.infer_throughput [--size demo] [--clips 32] [--json FILE]
    python -m benchmarks.infer_throughput --device cuda --dtype bf16   # on a GPU

Both systems transcribe the same fixed set of clips (greedy decoding, exactly
``--new-tokens`` tokens each: ``min_new_tokens = max_new_tokens``, since untrained models stop
at arbitrary points). qaudio runs through its user API (:class:`qaudio.infer.Pipeline`,
``transcribe``) at batch sizes 1, 8 and 32; the peer runs ``processor -> generate`` at the same
batch sizes, and its best one is reported with its batch-1 figures. Both order clips longest
first before batching (what ``Pipeline`` does; the peer pads to 30 s anyway).

Printed per run: audio seconds transcribed per second of wall time, generated tokens per
second, time to first token, peak memory, and the qaudio/peer ratios; and whether qaudio's
outputs at every batch size equal its batch-1 outputs (in fp32; bf16 may flip near-ties).

Time to first token of a batch: from the moment the batch's work starts (the previous batch
finished) to the end of its prefill forward pass, so it covers feature extraction, the
encoder, the projector and the prefill, for both systems; averaged over batches.

Each (system, batch size) runs in a fresh subprocess (peak memory per run). See
:mod:`benchmarks.common` for what is held equal between the two systems.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from benchmarks import common, systems
from benchmarks.clips import MIXES, make_clips
from qaudio.audio import SAMPLE_RATE
from qaudio.profiling import measure

MODULE = "benchmarks.infer_throughput"
SYSTEMS = ("qaudio", "peer")
TARGET_RATIO = 5.0  # the goal: qaudio at batch 32 >= 5x the peer's batch-1 throughput
TARGET_BATCH = 32


class PrefillTimer:
    """Forward hooks on a generating module: when each forward pass ends, and which were prefills.

    A prefill is a forward pass over more than one new position (the prompt); decode steps
    feed one token each.
    """

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.device = device
        self.events: list[tuple[bool, float]] = []  # (is prefill, end time)
        self._prefill = False
        module.register_forward_pre_hook(self._before, with_kwargs=True)
        module.register_forward_hook(self._after)

    def _before(self, module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        ids = kwargs.get("input_ids", args[0] if args else None)
        new = embeds if embeds is not None else ids
        self._prefill = new is not None and new.shape[1] > 1

    def _after(self, module, args, output):
        if self._prefill:
            common.synchronize(self.device)
        self.events.append((self._prefill, time.perf_counter()))

    def reset(self) -> None:
        self.events = []

    def first_token_times(self, start: float) -> list[float]:
        """Per batch: end of its prefill minus the end of the previous batch's last pass (or ``start``)."""
        times, previous = [], start
        for is_prefill, end in self.events:
            if is_prefill:
                times.append(end - previous)
            previous = end
        return times


def _qaudio(spec: dict, texts: list[str], device: torch.device, dtype: str):
    """qaudio through its user API: Pipeline.transcribe -> (transcribe, module that generates, model)."""
    from qaudio.infer import Pipeline
    from qaudio.model.trainable import unwrap

    model, _ = systems.build_qaudio(systems.model_config(spec["size"], spec.get("stack")), texts, spec["seed"])
    model.to(device=device, dtype=common.DTYPES[dtype]).eval()
    # Speech-shaped noise is not speech to a voice-activity detector: ask about every clip.
    runner = Pipeline(model, batch_size=spec["batch_size"], max_new_tokens=spec["new_tokens"], detect_no_speech=False)
    n = spec["new_tokens"]

    def transcribe(clips):
        results = runner.transcribe([(c.samples, SAMPLE_RATE) for c in clips], min_new_tokens=n)
        bad = [r.error for r in results if r.error]
        if bad:
            raise RuntimeError(f"qaudio failed on {len(bad)} clips: {bad[0]}")
        return [r.raw for r in results]

    return transcribe, unwrap(model.language_model), model


def _peer(spec: dict, texts: list[str], device: torch.device, dtype: str):
    """The peer, the way its users run it: processor -> generate, longest clips first."""
    peer = systems.build_peer(systems.model_config(spec["size"], spec.get("stack")), texts, spec["seed"])
    peer.model.to(device=device, dtype=common.DTYPES[dtype]).eval()
    prompt, n, batch_size, tok = common.asr_prompt(), spec["new_tokens"], spec["batch_size"], peer.tokenizer

    def transcribe(clips):
        order = sorted(range(len(clips)), key=lambda i: -len(clips[i].samples))
        outputs: list[str | None] = [None] * len(clips)
        with torch.inference_mode():
            for k in range(0, len(order), batch_size):
                index = order[k : k + batch_size]
                batch = common.to_device(
                    systems.peer_inputs(peer, [clips[i] for i in index], prompt, train=False), device
                )
                generated = peer.model.generate(
                    **batch,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    num_beams=1,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )  # (B, L + n) or (B, n)
                for i, text in zip(index, peer.text.batch_decode(generated[:, -n:])):
                    outputs[i] = text
        return outputs

    return transcribe, peer.model, peer.model


def worker(spec: dict) -> dict:
    """Build one system and transcribe the clip set at one batch size; measure."""
    device = common.resolve_device(spec["device"], spec["dtype"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    clips = make_clips(MIXES[spec["mix"]], spec["clips"], spec["seed"])
    texts = [c.text for c in clips]
    build = _qaudio if spec["system"] == "qaudio" else _peer
    transcribe, generating_module, module = build(spec, texts, device, spec["dtype"])
    timer = PrefillTimer(generating_module, device)
    transcribe(clips[: min(2, len(clips))])  # warm-up: first-call allocations and kernel choices

    timer.reset()
    with measure("transcribe", device) as phase:
        start = time.perf_counter()  # the prefill timer's origin
        outputs = transcribe(clips)
    wall, peak = phase.seconds, phase.peak_bytes / 2**20

    batches = -(-len(clips) // spec["batch_size"])
    prefills = sum(1 for is_prefill, _ in timer.events if is_prefill)
    if prefills != batches or len(timer.events) != batches * spec["new_tokens"]:
        raise RuntimeError(
            f"expected {batches} batches of {spec['new_tokens']} forward passes, saw {prefills} "
            f"prefills in {len(timer.events)} passes: generation did not run to the fixed length"
        )
    first = timer.first_token_times(start)
    audio_s = sum(c.duration for c in clips)
    return {
        "system": spec["system"],
        "batch_size": spec["batch_size"],
        "clips": len(clips),
        "audio_seconds": audio_s,
        "new_tokens_per_clip": spec["new_tokens"],
        "wall_s": wall,
        "audio_seconds_per_s": audio_s / wall,
        "tokens_per_s": len(clips) * spec["new_tokens"] / wall,
        "examples_per_s": len(clips) / wall,
        "ttft_s": sum(first) / len(first),
        "ttft_first_batch_s": first[0],
        "peak_memory_mib": peak,
        "memory_before_mib": phase.start_bytes / 2**20,
        "memory_method": phase.method,
        "parameters": systems.count_parameters(module),
        "torch_threads": torch.get_num_threads(),
        "outputs": outputs,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


# ---- The driver --------------------------------------------------------------------------------


def identical(outputs: list[str], reference: list[str]) -> dict:
    differ = [i for i, (a, b) in enumerate(zip(outputs, reference)) if a != b]
    return {"identical": not differ and len(outputs) == len(reference), "differing_clips": differ}


def compare(results: list[dict]) -> tuple[list[dict], dict]:
    """One object per qaudio batch size, against the peer's batch 1, its best batch size and, where
    measured, the same batch size (the fair basis for time to first token)."""
    ours = {r["batch_size"]: r for r in results if r["system"] == "qaudio"}
    peers = {r["batch_size"]: r for r in results if r["system"] == "peer"}
    peer_1 = peers.get(1)
    peer_best = max(peers.values(), key=lambda r: r["audio_seconds_per_s"]) if peers else None
    reference = ours.get(1, {}).get("outputs")
    modes = []
    for batch_size, r in sorted(ours.items()):

        def ratios(peer):
            return {
                "audio_seconds_per_s": common.ratio(r["audio_seconds_per_s"], peer and peer["audio_seconds_per_s"]),
                "tokens_per_s": common.ratio(r["tokens_per_s"], peer and peer["tokens_per_s"]),
                "ttft": common.ratio(r["ttft_s"], peer and peer["ttft_s"]),
                "peak_memory": common.ratio(r["peak_memory_mib"], peer and peer["peak_memory_mib"]),
            }

        check = identical(r["outputs"], reference) if reference is not None else {"identical": None}
        mode = {
            "mode": f"batch {batch_size}",
            "batch_size": batch_size,
            "qaudio": _figures(r),
            "peer": _figures(peer_1),
            "peer_best": _figures(peer_best),
            "ratio": ratios(peer_1),
            "ratio_vs_peer_best": ratios(peer_best),
            "ratio_vs_peer_same_batch": ratios(peers.get(batch_size)),
            "outputs_equal_batch_1": check,
        }
        if batch_size == TARGET_BATCH:
            value = mode["ratio"]["audio_seconds_per_s"]
            mode["target"] = {
                "throughput_ratio_vs_peer_batch_1": TARGET_RATIO,
                "met": None if value is None else value >= TARGET_RATIO and bool(check["identical"]),
            }
        modes.append(mode)
    peer_reference = peer_1["outputs"] if peer_1 else None
    peer_check = {
        bs: identical(p["outputs"], peer_reference)["identical"]
        for bs, p in sorted(peers.items())
        if peer_reference is not None
    }
    return modes, {"peer_outputs_equal_batch_1": peer_check}


def _figures(r: dict | None) -> dict | None:
    return None if r is None else {k: v for k, v in r.items() if k != "outputs"}


COLUMNS = [
    ("system", "system", ""),
    ("batch_size", "batch", ""),
    ("audio_seconds_per_s", "audio s/s", ".1f"),
    ("tokens_per_s", "tokens/s", ".1f"),
    ("ttft_s", "TTFT s", ".3f"),
    ("peak_memory_mib", "peak MiB", ".0f"),
    ("vs_peer_1", "x peer b1", ""),
    ("vs_peer_best", "x peer best", ""),
    ("ttft_same", "TTFT q/p same b", ""),
    ("same", "= batch 1", ""),
]


def table(results: list[dict], modes: list[dict]) -> str:
    by_bs = {m["batch_size"]: m for m in modes}
    rows = []
    for r in sorted(results, key=lambda r: (SYSTEMS.index(r["system"]), r["batch_size"])):
        row = dict(r)
        if r["system"] == "qaudio":
            m = by_bs[r["batch_size"]]
            row["vs_peer_1"] = _times(m["ratio"]["audio_seconds_per_s"])
            row["vs_peer_best"] = _times(m["ratio_vs_peer_best"]["audio_seconds_per_s"])
            row["ttft_same"] = _times(m["ratio_vs_peer_same_batch"]["ttft"])
            row["same"] = {True: "yes", False: "NO", None: None}[m["outputs_equal_batch_1"]["identical"]]
        rows.append(row)
    return common.format_table(rows, COLUMNS)


def _times(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}x"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size",
        default="demo",
        help="a qaudio preset whose sizes both systems are built at, with random weights (default: demo)",
    )
    parser.add_argument("--mix", default="librispeech", choices=list(MIXES), help="clip durations")
    parser.add_argument("--clips", type=int, default=32, help="clips in the fixed set (default 32)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per clip (default 32)")
    parser.add_argument("--batch-sizes", default="1,8,32", help="qaudio's batch sizes (default 1,8,32)")
    parser.add_argument(
        "--peer-batch-sizes",
        default="1,8,32",
        help="the peer's batch sizes; batch 1 and the best are reported (default 1,8,32)",
    )
    parser.add_argument("--stack", type=int, default=None, help="override qaudio's projector stack")
    parser.add_argument("--device", default="cpu", choices=common.DEVICES)
    parser.add_argument(
        "--dtype", default="fp32", choices=list(common.DTYPES), help="weights in fp32 (batch-invariant outputs) or bf16"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)


def _batch_sizes(text: str, flag: str) -> list[int]:
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        sizes = []
    if not sizes or sizes[0] < 1:
        raise ValueError(f"{flag} {text!r}: expected positive integers separated by commas, e.g. 1,8,32")
    return sizes


def _check(args) -> None:
    args.batch_sizes = _batch_sizes(args.batch_sizes, "--batch-sizes")
    args.peer_batch_sizes = _batch_sizes(args.peer_batch_sizes, "--peer-batch-sizes")
    if 1 not in args.batch_sizes or 1 not in args.peer_batch_sizes:
        raise ValueError(
            "batch size 1 must be among --batch-sizes and --peer-batch-sizes: the ratios and the "
            "identical-output check are against batch 1"
        )
    for name in ("clips", "new_tokens"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    systems.model_config(args.size, args.stack)
    common.resolve_device(args.device, args.dtype)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.infer_throughput", description=__doc__.split("\n")[0])
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
    info = common.machine_info(torch.device(args.device))
    started = time.perf_counter()
    base = {
        "size": args.size,
        "stack": args.stack,
        "mix": args.mix,
        "clips": args.clips,
        "new_tokens": args.new_tokens,
        "device": args.device,
        "dtype": args.dtype,
        "seed": args.seed,
        "threads": args.threads,
    }
    results = []
    for system, sizes in (("qaudio", args.batch_sizes), ("peer", args.peer_batch_sizes)):
        for batch_size in sizes:
            print(f"running {system} at batch {batch_size} ...", file=sys.stderr, flush=True)
            results.append(common.run_worker(MODULE, {**base, "system": system, "batch_size": batch_size}))
    modes, extra = compare(results)
    elapsed = time.perf_counter() - started
    command = "python -m " + MODULE + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    audio = results[0]["audio_seconds"]
    print(
        f"\nqaudio vs Qwen2AudioForConditionalGeneration: inference, size {args.size}, {args.clips} "
        f"{args.mix} clips ({audio:.0f} s of audio), greedy, {args.new_tokens} tokens each, "
        f"{args.device} {args.dtype}"
    )
    print(common.machine_line(info, args.threads))
    print(table(results, modes))
    print(
        "x peer b1 / x peer best: qaudio's audio s/s over the peer's at batch 1 / at its best batch size.\n"
        "= batch 1: qaudio's outputs equal its batch-1 outputs. TTFT: a batch's features + encoder + prefill;\n"
        "TTFT q/p same b: qaudio's over the peer's at the same batch size (lower is better)."
    )
    for m in modes:
        if "target" in m:
            t = m["target"]
            print(
                f"target: batch {m['batch_size']} >= {t['throughput_ratio_vs_peer_batch_1']:g}x the peer's batch-1 "
                f"throughput with identical outputs: {'met' if t['met'] else 'MISSED'} "
                f"({m['ratio']['audio_seconds_per_s']:.2f}x)"
            )
    print(f"peer outputs equal to its batch 1: {extra['peer_outputs_equal_batch_1']}")
    warning = common.load_warning(info, results)
    if warning:
        print(warning)
    print(f"total time {elapsed:.0f} s")
    if args.json:
        common.write_json(
            args.json,
            {
                "benchmark": "infer_throughput",
                "command": command,
                "machine": info,
                "elapsed_s": elapsed,
                "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "result", "json")},
                "modes": modes,
                **extra,
                **({"warning": warning} if warning else {}),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
