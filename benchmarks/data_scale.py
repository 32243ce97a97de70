"""Does the data path's cost stay flat as the corpus grows? The manifest path against streamed shards.

    python -m benchmarks.data_scale --out /tmp/qaudio-data-scale --sizes 10000,100000,1000000

For each corpus size the script makes (once, then reuses) a synthetic corpus of short clips,
tones and noise of 0.3-0.8 s with random three-word targets, as both a JSONL manifest (over a
pool of 64 wav files) and a shard set (``qaudio.shards``: FLAC in WebDataset tars). Then, for each
path and each DataLoader worker count, a fresh subprocess builds what training builds before its
first step and draws batches, and the script prints:

* start-up seconds: from nothing to the first micro-batch (manifest: read and validate every line,
  check every file, the mixture sampler; streaming: read the index, then the first window);
* resident memory: the training process's peak resident set (``getrusage`` ``ru_maxrss``, the
  kernel's high-water mark of that fresh process, torch included; workers are separate
  processes, not counted);
* examples/s and audio s/s delivered by the loader (decode, log-mel, tokenise, pad) after the
  first batch, with 0, 2 and 4 workers;
* the ratio of each to the smallest corpus.

Both paths use the ``tiny`` preset's processor (a random encoder, a BPE on the targets):
the loader's work per clip (FLAC/wav decoding, a Whisper log-mel, tokenising) is the same for
every preset, up to the number of mel bins (80 here, 128 for large-v3).

The loader-throughput goal is the GPU's appetite (:func:`gpu_appetite`), printed with its
arithmetic: FLOPs per training example of a preset, from exact parameter counts
(:func:`qaudio.plan.model_shapes`), against a stated GPU throughput.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

POOL = 64  # distinct clips; records cycle through them (decoding cost is per clip, not per distinct clip)
WORDS = (
    "red green blue small large quick slow bright dark loud soft high low near far early late "
    "north south east west river stone cloud"
).split()
BATCH_SIZE, BUCKET_SIZE = 32, 50  # TrainConfig's defaults
GOAL_PRESET = "whisper-large-v3-qwen2.5-1.5b"
GPU_PEAK_TFLOPS = 989.0  # H100/H200 SXM dense bf16 tensor-core peak (NVIDIA's data sheet)
MFU = 0.4  # model FLOPs utilisation a tuned run reaches (an assumption: 0.3-0.5 is typical)
CLIP_SECONDS = 10.0  # a typical training clip (LibriSpeech's utterances average about 12 s)


# ---- the corpora ---------------------------------------------------------------------------------


def make_pool(folder: Path, seed: int = 0) -> list[tuple[Path, bytes, float]]:
    """(wav path, FLAC bytes, seconds) of POOL short tones and noises."""
    import soundfile as sf

    from qaudio.audio import SAMPLE_RATE
    from qaudio.shards import encode_audio

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    pool = []
    for i in range(POOL):
        n = int(rng.uniform(0.3, 0.8) * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) if i % 2 else 0.05 * rng.standard_normal(n)
        x = x.astype(np.float32)
        path = folder / f"clip{i:02d}.wav"
        sf.write(path, x, SAMPLE_RATE, subtype="PCM_16")
        pool.append((path, encode_audio(x, "flac"), n / SAMPLE_RATE))
    return pool


def make_corpus(root: Path, n: int, pool, seed: int = 0) -> None:
    """``root/train.jsonl`` and ``root/shards/`` with the same ``n`` examples (kept when present)."""
    from qaudio.data import Example
    from qaudio.shards import AudioRecord, write_shards

    if (root / "shards" / "index.json").is_file() and (root / "train.jsonl").is_file():
        return
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clip = rng.integers(0, POOL, size=n)
    words = rng.integers(0, len(WORDS), size=(n, 3))
    examples = [
        Example(
            id=f"ex{i:08d}",
            audio=str(pool[c][0]),
            duration=round(pool[c][2], 4),
            task="asr",
            target=" ".join(WORDS[w] for w in words[i]),
        )
        for i, c in enumerate(clip)
    ]
    with open(root / "train.jsonl", "w", encoding="utf-8") as f:
        f.writelines(ex.to_json() + "\n" for ex in examples)
    write_shards(
        (AudioRecord(ex, pool[c][1], "flac") for ex, c in zip(examples, clip, strict=True)),
        root / "shards",
        shard_size=256 * 10**6,
    )


# ---- one measurement (in a fresh process) ----------------------------------------------------------


def tiny_processor():
    from qaudio.config import resolve_model_config
    from qaudio.model.audio_lm import AudioLM

    return AudioLM.build(resolve_model_config("tiny"), tokenizer_texts=[" ".join(WORDS)] * 4).processor


def first_batch_manifest(root: Path, processor, workers: int):
    from qaudio.specs import get_task
    from qaudio.training.bad_data import BadDataLog
    from qaudio.training.batching import Collator, make_loader
    from qaudio.training.corpus import fit_to_window, load_items, parse_recipes
    from qaudio.training.mixing import MixtureSampler, task_weights

    bad = BadDataLog()
    items = load_items(
        parse_recipes(f"manifest:{root / 'train.jsonl'}"), "train", {"asr": get_task("asr")}, "tags", bad
    )
    items = fit_to_window(items, processor.max_audio_seconds, "skip", bad)
    durations = np.array([it.duration for it in items])
    sampler = MixtureSampler(
        {"asr": list(range(len(items)))},
        task_weights({"asr": len(items)}, ["asr"], 1.0),
        durations,
        BATCH_SIZE,
        0.0,
        BUCKET_SIZE,
        0,
    )
    collator = Collator(processor, items, "tags", 0, processor.max_audio_seconds, known_bad=bad.skipped)
    return iter(make_loader(sampler, 0, collator, workers))


def first_batch_stream(root: Path, processor, workers: int):
    from qaudio.shards import read_index
    from qaudio.specs import get_task
    from qaudio.training.batching import Collator
    from qaudio.training.streaming import ShardStream, StreamLoader, StreamOptions, mixture

    indexes = [read_index(str(root / "shards"))]
    opts = StreamOptions(BATCH_SIZE, 0.0, BUCKET_SIZE, 0, "tags", processor.max_audio_seconds, "skip")
    collator = Collator(processor, [], "tags", 0, processor.max_audio_seconds)
    stream = ShardStream(
        indexes,
        mixture(indexes, ["asr"], 1.0),
        {"asr": get_task("asr")},
        False,
        collator,
        opts,
        0,
        1,
        workers,
        BATCH_SIZE * BUCKET_SIZE,
    )
    return StreamLoader(stream, workers).loader()


PATHS = {"manifest": first_batch_manifest, "stream": first_batch_stream}


def measure(path: str, root: Path, workers: int, batches: int) -> dict:
    processor = tiny_processor()  # before the clock: the same for both paths
    t0 = time.perf_counter()
    it = PATHS[path](root, processor, workers)
    first = next(it)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    examples, seconds = 0, 0.0
    for _ in range(batches):
        b = next(it)
        examples += len(b.ids)
        seconds += b.audio_seconds
    elapsed = time.perf_counter() - t0
    return {
        "startup_s": startup,
        "examples_per_s": examples / elapsed,
        "audio_s_per_s": seconds / elapsed,
        "first_batch": len(first.ids),
    }


def run_child(path: str, root: Path, workers: int, batches: int) -> dict:
    """One measurement in a fresh process (so one run's memory cannot colour the next)."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.data_scale",
        "--measure",
        path,
        "--root",
        str(root),
        "--workers",
        str(workers),
        "--batches",
        str(batches),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


# ---- the goal ----------------------------------------------------------------------------------------


def flops_per_example(preset: str = GOAL_PRESET, seconds: float = CLIP_SECONDS) -> dict:
    """Training FLOPs of one ``seconds`` clip: frozen encoder forward, projector forward+backward,
    LoRA LLM forward + input-gradient backward (frozen weights need no weight gradients)."""
    from qaudio.config import resolve_model_config
    from qaudio.model.lengths import audio_token_count, encoder_frame_count
    from qaudio.plan import PROMPT_TOKENS, TEXT_TOKENS_PER_SECOND, model_shapes, vocab_size

    config = resolve_model_config(preset)
    shapes = model_shapes(config, "lora", vocab_size(config))
    samples = int(seconds * 16000)
    frames = int(encoder_frame_count(samples))  # encoder positions (real length)
    audio_tokens = int(audio_token_count(samples, config))
    tokens = audio_tokens + PROMPT_TOKENS + int(TEXT_TOKENS_PER_SECOND * seconds)
    enc, llm = config.encoder, config.llm
    encoder = 2 * shapes.params["encoder"] * frames + enc.layers * 4 * frames**2 * enc.d_model  # matmuls + attention
    projector = 6 * shapes.params["projector"] * audio_tokens  # per output token, roughly: fwd + bwd
    head = 2 * shapes.vocab * llm.hidden_size  # the output projection per position
    llm_fwd = 2 * shapes.params["llm_body"] * tokens + head * tokens + llm.num_layers * 4 * tokens**2 * llm.hidden_size
    return {
        "preset": preset,
        "seconds": seconds,
        "encoder_frames": frames,
        "llm_tokens": tokens,
        "encoder_params": shapes.params["encoder"],
        "llm_body_params": shapes.params["llm_body"],
        "encoder": encoder,
        "projector": projector,
        "llm": 2 * llm_fwd,
        "total": encoder + projector + 2 * llm_fwd,
    }


def gpu_appetite(preset: str = GOAL_PRESET, seconds: float = CLIP_SECONDS) -> tuple[float, str]:
    """Examples per second one GPU consumes, and the arithmetic as text."""
    f = flops_per_example(preset, seconds)
    rate = GPU_PEAK_TFLOPS * 1e12 * MFU / f["total"]
    text = (
        f"{preset}, one {seconds:g} s clip: encoder {f['encoder_params'] / 1e6:.0f} M params x {f['encoder_frames']} "
        f"frames x 2 + attention = {f['encoder'] / 1e12:.2f} TFLOP (frozen: forward only); LLM body "
        f"{f['llm_body_params'] / 1e9:.2f} B params x {f['llm_tokens']} tokens, forward + input-gradient "
        f"backward (+ output head, attention) = {f['llm'] / 1e12:.2f} TFLOP; projector {f['projector'] / 1e12:.3f} "
        f"TFLOP; total {f['total'] / 1e12:.2f} TFLOP per example. One GPU at {GPU_PEAK_TFLOPS:g} TFLOP/s bf16 "
        f"peak x {MFU:g} MFU = {GPU_PEAK_TFLOPS * MFU:.0f} TFLOP/s -> {rate:.0f} examples/s = "
        f"{rate * seconds:.0f} audio s/s per GPU"
    )
    return rate, text


# ---- the table --------------------------------------------------------------------------------------


def table(rows: list[dict]) -> str:
    base = {(r["path"], r["workers"]): r for r in rows if r["size"] == min(x["size"] for x in rows)}
    lines = [
        "| path | examples | workers | start-up s | x | memory MB | x | examples/s | x | audio s/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = base[(r["path"], r["workers"])]
        lines.append(
            f"| {r['path']} | {r['size']:,} | {r['workers']} | {r['startup_s']:.2f} | "
            f"{r['startup_s'] / b['startup_s']:.2f} | {r['rss_mb']:.0f} | {r['rss_mb'] / b['rss_mb']:.2f} | "
            f"{r['examples_per_s']:.0f} | {r['examples_per_s'] / b['examples_per_s']:.2f} | "
            f"{r['audio_s_per_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/qaudio-data-scale", help="where the synthetic corpora are made (reused)")
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="corpus sizes, comma-separated; the first is the base"
    )
    parser.add_argument("--workers", default="0,2,4", help="DataLoader worker counts, comma-separated")
    parser.add_argument("--batches", type=int, default=40, help="micro-batches timed after the first")
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--measure", choices=tuple(PATHS), help=argparse.SUPPRESS)  # one run, in a child process
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        result = measure(args.measure, Path(args.root), int(args.workers), args.batches)
        import resource

        result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux: this process's peak
        print(json.dumps(result))
        return 0
    out = Path(args.out)
    pool = make_pool(out / "pool")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        t0 = time.perf_counter()
        make_corpus(out / str(n), n, pool)
        print(f"corpus of {n:,} examples ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for path in PATHS:
            for w in (int(x) for x in args.workers.split(",")):
                row = {"path": path, "size": n, "workers": w, **run_child(path, out / str(n), w, args.batches)}
                print(json.dumps(row), file=sys.stderr)
                rows.append(row)
    print(table(rows))
    rate, text = gpu_appetite()
    print(f"\ngoal: the loader feeds {GOAL_PRESET} on one GPU: {text}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "gpu_appetite_examples_per_s": rate}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
