"""Lighter variants of one model side by side: size, memory, speed and quality in one run.

From one base model (a saved model directory, or the ``tiny`` preset trained here for
``--train-steps`` on the synthetic corpus) each variant is derived and measured on the same
held-out examples of the corpus's test split (speed and WER: its first ``--clips`` English ASR clips):

* parameters, weight bytes in memory (packed int8/int4 counted as stored) and the size of the
  variant saved with ``save_pretrained``;
* peak inference memory: the resident-set high-water mark while transcribing, minus the
  process's resident set before the model was loaded (so the libraries' own ~0.5 GB do not
  swamp a small model); each variant runs in a fresh process;
* latency per clip and real-time factor (seconds of compute per second of audio) at batch 1
  and 8, greedy decoding;
* corpus WER (Whisper English normaliser) of the batch-1 transcripts;
* after the timed phase (so outside the latency and peak figures): captioning CIDEr-D, emotion
  accuracy and scene accuracy on the first ``--quality-clips`` test examples of each, the
  ``synthetic`` suite's benchmarks scored by ``qaudio eval``'s own code (its decoding: label
  scoring for the two classification tasks, greedy at the task's token cap for captions; its
  metric profiles), so the values match a ``make demo`` report's rows on the same examples
  (``qaudio eval --limit``). A benchmark the corpus has no test examples for (or whose metric
  cannot run here) is listed as skipped with the reason; ``--quality-clips 0`` drops these columns.

The training rows (LoRA and QLoRA) train the base's architecture (its config: the same
sources, sizes and seed, so the same initial weights; a saved model cannot change what trains
when fine-tuned) with ``--train-llm lora`` / ``qlora`` for the same steps on the same data, and
report their peak training memory (whole process, model loading included), the bytes of the
frozen LLM as a bf16 run holds it (float tensors at 2 bytes a value, QLoRA's NF4 layers as
stored: packed codes plus block scales; computed from the trained model's tensors), in all and
in its Linear layers, and then the inference figures of the trained model.

The distilled rows (``student``, ``student-int8``) train the base's config with half its LLM
layers and MLP width (``--student-layers``, ``--student-mlp``) from random LLM and projector
weights with the base as the teacher (``--teacher``; same encoder and tokenizer) for
``--distill-steps`` on the same data, then measure the student as is and in int8. Target: at
half the LLM's parameters, WER within 1.5 points of the teacher (the ``fp32`` row).

The augmentation rows (``augment-off``, ``augment-on``) train the base's config as it is from
its initial weights for the same steps, without and with ``--augment``, and report the dev loss
on clean dev clips and the inference figures of each trained model.

The dual-encoder rows train the base's architecture for the same steps twice, with its own
LLM training mode: ``whisper-only`` as it is (the control), ``dual`` with a second audio tower
(``ModelConfig.towers``: AST beside Whisper, frozen; ``--dual-tower`` picks its source, by
default a random-weight tower of AST's geometry, since no AST checkpoint is reachable offline).

A new variant is one function added to :data:`VARIANTS` (inference: base directory -> model;
training: :data:`TRAINED`). Targets (from the issue that asked for this table): int8 >= 1.5x
fp32 throughput, memory <= 0.5x, WER within 0.5 points; QLoRA frozen-LLM memory <= 0.4x bf16
LoRA's.

    python -m benchmarks.compress --corpus data/synthetic --model runs/demo/model --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks import common
from qaudio.suite import Benchmark

MODULE = "benchmarks.compress"
BATCH_SIZES = (1, 8)
TARGETS = {
    "int8_throughput_x": 1.5,
    "int8_memory_x": 0.5,
    "int8_wer_points": 0.5,
    "qlora_frozen_llm_x": 0.4,
    "student_wer_points": 1.5,
}
TAG = re.compile(r"<\|[^|]*\|>")


# ---- The variants ------------------------------------------------------------------------------


def _load(directory: str, dtype: str = "float32"):
    from qaudio.model import AudioLM

    return AudioLM.from_pretrained(directory, device="cpu", dtype=dtype).eval()


def _quantized(mode: str, parts: tuple[str, ...] = ("llm",)) -> Callable[[str], object]:
    def derive(directory: str):
        from qaudio.model.quantize import quantize

        return quantize(_load(directory), mode, parts=parts)

    return derive


@dataclass(frozen=True)
class Variant:
    derive: Callable[[str], object]  # base model directory -> the model to measure
    note: str


VARIANTS: dict[str, Variant] = {
    "fp32": Variant(_load, "the base, float32"),
    "bf16": Variant(lambda d: _load(d, "bfloat16"), "weights and compute in bfloat16"),
    "int8": Variant(_quantized("int8"), "LLM Linear layers int8 (torch dynamic, fbgemm)"),
    "int8-all": Variant(_quantized("int8", ("llm", "encoder", "projector")), "int8 in the encoder and projector too"),
    "int4": Variant(_quantized("int4"), "LLM Linear layers NF4 (bitsandbytes)"),
}
# Augmentation on/off: the base's config (as it trains) for the same steps, without and with --augment.
AUGMENTED = {"augment-off": "", "augment-on": "noise,gain,speed,specaugment"}
# Trained on the base's config for the same steps: --train-llm lora / qlora, and the dual-encoder pair.
TRAINED = ("lora", "qlora", "whisper-only", "dual")


def dual_encoder_config(base, tower_source: str):
    """The base's config with an AST tower beside Whisper (frozen), for the ``dual`` row."""
    from dataclasses import replace

    from qaudio.config import TowerConfig

    return replace(base, towers=(TowerConfig(kind="ast", source=tower_source, train="frozen"),))


# Rows whose model config is derived from the base's (the others set --train-llm to the row's name).
DERIVED_CONFIGS: dict[str, Callable] = {
    "whisper-only": lambda base, spec: base,
    "dual": lambda base, spec: dual_encoder_config(base, spec["dual_tower"]),
}
# Distilled from the base (the teacher) into its config with fewer LLM layers: one student, measured as is and in int8.
DISTILLED: dict[str, Variant] = {
    "student": Variant(_load, "the base's config with a smaller LLM (--student-*), distilled from the base"),
    "student-int8": Variant(_quantized("int8"), "the distilled student, LLM Linear layers int8"),
}


# ---- Clips -------------------------------------------------------------------------------------


def english_asr_clips(corpus: Path, count: int) -> list[dict]:
    """The first ``count`` English ASR examples of the corpus's test split: {audio path, target, seconds}."""
    manifest = corpus / "test.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} does not exist; expected a synthetic corpus (qaudio synth --out DIR)")
    clips = []
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        if row.get("task") == "asr" and row.get("audio_lang", "en") == "en":
            clips.append({"audio": str(corpus / row["audio"]), "target": row["target"], "seconds": row["duration"]})
        if len(clips) == count:
            break
    if not clips:
        raise ValueError(f"{manifest} has no English asr example")
    return clips


# ---- Quality beyond ASR: the synthetic suite's own benchmarks ---------------------------------


@dataclass(frozen=True)
class Quality:
    benchmark: str  # the synthetic suite's benchmark, scored as `qaudio eval` scores it
    value: str  # the metric value shown
    label: str  # what the header text calls it
    header: str  # the table's column
    fmt: str


QUALITY = {
    "cider_d": Quality("synthetic captioning", "cider_d", "captioning CIDEr-D", "CIDEr-D", ".3f"),
    "emotion_accuracy": Quality("synthetic emotion", "accuracy", "emotion accuracy", "emotion %", ".1f"),
    "scene_accuracy": Quality("synthetic acoustic scene", "accuracy", "scene accuracy", "scene %", ".1f"),
}
QUALITY_BATCH_SIZE = 8  # examples per forward pass; float32 batched answers equal one-by-one ones


def quality_benchmarks(corpus: Path) -> dict[str, Benchmark]:
    """The :data:`QUALITY` benchmarks of the ``synthetic`` suite, read from ``corpus``.

    The suite finds its corpus at ``<data root>/synthetic`` (``make demo`` passes the corpus's
    parent as the data root); the root is set to ``corpus`` itself so a corpus under any name
    is read, with the suite's recipe, split, task, language filter and metric profile unchanged.
    """
    from dataclasses import replace

    from qaudio.specs import get_suite

    by_name = {b.name: b for b in get_suite("synthetic").benchmarks}
    return {column: replace(by_name[q.benchmark], root=str(corpus)) for column, q in QUALITY.items()}


def quality_scores(pipeline, corpus: Path, limit: int) -> dict:
    """The model's :data:`QUALITY` values on the first ``limit`` test examples of each benchmark,
    through qaudio's evaluation path (label scoring for the classification tasks, greedy decoding
    at each task's token cap for captions, the suite's metric profile; no bootstrap intervals or
    chance levels).

    Returns ``{column: value, "quality_n": {column: examples scored}, "quality_skipped": {column:
    reason}}``; a benchmark without data (or whose metric cannot run here) is skipped with the reason.
    """
    from qaudio.evaluate import benchmark_entry, load_benchmark, run_model, score_entry
    from qaudio.report import MODEL

    out: dict = {"quality_n": {}, "quality_skipped": {}}
    for column, benchmark in quality_benchmarks(corpus).items():
        loaded = load_benchmark(benchmark, limit=limit)
        if loaded.reason:  # e.g. no example of the task in the test split
            out["quality_skipped"][column] = f"{benchmark.name}: {loaded.reason}"
            continue
        entry = benchmark_entry(loaded)
        entry["results"][MODEL] = run_model(pipeline, loaded, QUALITY_BATCH_SIZE, progress=False)
        scored = score_entry(entry, bootstrap=0, chance=False)["results"][MODEL]
        if scored["status"] != "ok":  # e.g. the caption metric's jars are missing: the reason names the fix
            out["quality_skipped"][column] = f"{benchmark.name}: {scored['reason']}"
            continue
        out[column] = scored["metric"]["values"][QUALITY[column].value]
        out["quality_n"][column] = scored["metric"]["n"]
    return out


# ---- Workers (one fresh process each) ----------------------------------------------------------


def _transcribe(model, audios, prompt: str, batch_size: int, new_tokens: int) -> list[str]:
    out = []
    for i in range(0, len(audios), batch_size):
        chunk = audios[i : i + batch_size]
        with torch.no_grad():
            ids = model.generate(model.processor.prepare(chunk, [prompt] * len(chunk)), max_new_tokens=new_tokens)
            out += model.processor.batch_decode(ids)
    return [TAG.sub("", text).strip() for text in out]


def _disk_mib(model) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 2**20


def infer_worker(spec: dict) -> dict:
    from qaudio.audio import load_audio
    from qaudio.metrics import wer
    from qaudio.model.quantize import weight_bytes
    from qaudio.profiling import measure, resident_bytes

    torch.set_num_threads(spec["threads"])
    before_model = resident_bytes() / 2**20
    variant = spec["variant"]
    derived = {**VARIANTS, **DISTILLED}
    derive = derived[variant].derive if variant in derived else _load  # trained rows: the fine-tuned model
    model = derive(spec["model"])
    clips = spec["clips"]
    audios = [load_audio(c["audio"]).samples for c in clips]
    audio_s = sum(c["seconds"] for c in clips)
    prompt = common.asr_prompt()
    _transcribe(model, audios[:2], prompt, 2, spec["new_tokens"])  # warm-up
    result = {
        "variant": variant,
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_mib": weight_bytes(model) / 2**20,
        "llm_weights_mib": weight_bytes(model.language_model) / 2**20,
    }
    with measure("transcribe") as phase:  # the resident set's peak over the timed batches
        for batch_size in spec["batch_sizes"]:
            start = time.perf_counter()
            texts = _transcribe(model, audios, prompt, batch_size, spec["new_tokens"])
            wall = time.perf_counter() - start
            result[f"latency_ms_b{batch_size}"] = 1000 * wall / len(clips)
            result[f"rtf_b{batch_size}"] = wall / audio_s
            if batch_size == 1:
                score = wer.compute(texts, [c["target"] for c in clips], profile="whisper", language="en")
                result["wer"] = score.values["wer"]
                result["outputs"] = texts
    result["peak_inference_mib"] = phase.peak_bytes / 2**20 - before_model
    if spec.get("quality_clips"):  # after the measured phase: its time and memory stay out of the figures above
        from qaudio.infer import Pipeline

        start = time.perf_counter()
        result |= quality_scores(Pipeline(model), Path(spec["corpus"]), spec["quality_clips"])
        result["quality_s"] = time.perf_counter() - start  # what these columns add to the run (JSON only)
    result["disk_mib"] = _disk_mib(model)
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    return result


def _frozen_llm_mib(llm) -> tuple[float, float]:
    """MiB of the LLM's frozen weights as a bf16 run holds them (float tensors at 2 bytes a value,
    4-bit ones as stored: packed codes plus block scales), in all and in its Linear layers but the head."""
    from torch import nn

    from qaudio.model.trainable import unwrap

    base = unwrap(llm)
    head = next(name for name, m in base.named_modules() if m is base.get_output_embeddings())

    def held(module: nn.Module, recurse: bool) -> int:
        total = 0
        for p in module.parameters(recurse=recurse):
            if p.requires_grad:
                continue
            if p.is_floating_point():
                total += p.numel() * 2
            else:  # bitsandbytes NF4: two codes per byte and a float32 scale per block
                total += p.numel() * p.element_size() + p.quant_state.absmax.numel() * 4
        return total

    # The head and what peft wraps inside it (the tied embedding's matrix) are not counted as Linear layers.
    linear = sum(
        held(m, False) for name, m in base.named_modules() if isinstance(m, nn.Linear) and not name.startswith(head)
    )
    return held(base, True) / 2**20, linear / 2**20


def bench_train_config(spec: dict, model: str, output_dir: str | Path, **fields):
    """The TrainConfig every row's training shares: English ASR on the synthetic corpus, fp32, one
    process, no dev pass, no checkpoints, nothing written but the metrics; ``fields`` are the row's own."""
    from qaudio.training.config import TrainConfig

    shared = {
        "recipes": f"synthetic:{spec['corpus']}",
        "tasks": "asr",
        "dev_split": "none",
        "precision": "fp32",
        "threads": spec["threads"],
        "batch_size": spec.get("batch_size", 8),
        "max_steps": spec["steps"],
        "log_every": 1,
        "save_every": 10**6,
        "progress": False,
        "tensorboard": False,
        "plot": False,
        "seed": spec["seed"],
    }
    return TrainConfig(model=model, output_dir=str(output_dir), **(shared | fields))


def train_worker(spec: dict) -> dict:
    import qaudio.train as train_module
    from qaudio.config import ModelConfig, with_overrides
    from qaudio.model import AudioLM
    from qaudio.profiling import measure
    from qaudio.training.metrics_log import read_metrics

    # A saved model is trained as its config says, so the row trains the base's architecture
    # (same sources, sizes and seed) with --train-llm lora or qlora from its initial weights.
    out = Path(spec["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((Path(spec["model"]) / "config.json").read_text())
    model_file = out.parent / f"{spec['mode']}-model.json"
    base_config = ModelConfig.from_dict(meta["model"])
    derive = DERIVED_CONFIGS.get(spec["mode"])
    model_config = derive(base_config, spec) if derive else with_overrides(base_config, trainable={"llm": spec["mode"]})
    model_config.save(model_file)
    config = bench_train_config(spec, str(model_file), out, train_llm=model_config.trainable.llm)
    with measure("train") as phase:  # the resident set's peak while training, above where it began
        final = train_module.train(config)
    wall, peak = phase.seconds, phase.added_bytes / 2**20
    losses = [r["loss"] for r in read_metrics(out, "train")]
    frozen, frozen_linear = _frozen_llm_mib(AudioLM.from_pretrained(final).language_model)
    return {
        "mode": spec["mode"],
        "model_dir": str(final),
        "train_steps": spec["steps"],
        "train_s_per_step": wall / spec["steps"],
        "peak_training_mib": peak,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "frozen_llm_mib": frozen,
        "frozen_llm_linear_mib": frozen_linear,
    }


def distill_worker(spec: dict) -> dict:
    """Distill the base into its own config with the LLM sizes ``student_llm`` (same encoder, projector
    and tokenizer; random LLM and projector weights), on the same data as the training rows."""
    import qaudio.train as train_module
    from qaudio.config import ModelConfig, with_overrides

    out = Path(spec["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    teacher = ModelConfig.from_dict(json.loads((Path(spec["model"]) / "config.json").read_text())["model"])
    student_file = out.parent / "student-model.json"
    with_overrides(teacher, llm=spec["student_llm"]).save(student_file)
    config = bench_train_config(
        spec,
        str(student_file),
        out,
        teacher=spec["model"],
        distill_alpha=spec["alpha"],
        distill_temperature=spec["temperature"],
        lr=spec["lr"],
    )
    start = time.perf_counter()
    final = train_module.train(config)
    wall = time.perf_counter() - start
    return {
        "train_steps": spec["steps"],
        "train_s_per_step": wall / spec["steps"],
        **_student_facts(final, spec["model"]),
    }


def _student_facts(student: str | Path, teacher: str | Path) -> dict:
    """A distilled student's directory, LLM size against its teacher's, and its run's first and last losses."""
    from qaudio.model import AudioLM
    from qaudio.training.metrics_log import read_metrics

    def llm_parameters(directory: str | Path) -> int:
        return sum(p.numel() for p in AudioLM.from_pretrained(directory).language_model.parameters())

    facts: dict = {
        "model_dir": str(student),
        "student_llm_parameters": llm_parameters(student),
        "teacher_llm_parameters": llm_parameters(teacher),
        "losses": "-",
    }
    run_dir = Path(student).parent  # the run directory holding the student's model/, if it is one
    records = read_metrics(run_dir, "train") if (run_dir / "metrics.jsonl").is_file() else []
    if records and "distill_kl" in records[0]:
        first, last = records[0], records[-1]
        facts["losses"] = (
            f"{first['loss']:.2f}->{last['loss']:.2f} (KL {first['distill_kl']:.3f}->{last['distill_kl']:.3f})"
        )
    return facts


def base_worker(spec: dict) -> dict:
    """Train the ``tiny`` preset briefly when no base model is given."""
    import qaudio.train as train_module

    config = bench_train_config({**spec, "batch_size": 8}, "tiny", spec["output_dir"], log_every=10)
    return {"model_dir": str(train_module.train(config))}


def augment_worker(spec: dict) -> dict:
    """Train the base's config from its initial weights for the same steps, with or without --augment."""
    import qaudio.train as train_module
    from qaudio.config import ModelConfig
    from qaudio.training.metrics_log import read_metrics

    out = Path(spec["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    model_file = out.parent / f"{spec['variant']}-model.json"
    ModelConfig.from_dict(json.loads((Path(spec["model"]) / "config.json").read_text())["model"]).save(model_file)
    # a dev pass at the start and the end (64 clean clips): the row compares dev losses
    config = bench_train_config(
        spec,
        str(model_file),
        out,
        dev_split="dev",
        max_dev_examples=64,
        eval_every=0,
        augment=AUGMENTED[spec["variant"]],
    )
    final = train_module.train(config)
    losses = [r["loss"] for r in read_metrics(out, "train")]
    dev = [r["loss"] for r in read_metrics(out, "dev")]
    return {"model_dir": str(final), "first_loss": losses[0], "last_loss": losses[-1], "dev_loss": dev[-1]}


WORKERS = {
    "infer": infer_worker,
    "train": train_worker,
    "base": base_worker,
    "augment": augment_worker,
    "distill": distill_worker,
}


# ---- The driver --------------------------------------------------------------------------------


COLUMNS = [
    ("variant", "variant", ""),
    ("parameters", "params", ","),
    ("weights_mib", "weights MiB", ".1f"),
    ("disk_mib", "disk MiB", ".1f"),
    ("peak_inference_mib", "infer peak MiB", ".0f"),
    ("latency_ms_b1", "ms/clip b1", ".0f"),
    ("rtf_b1", "RTF b1", ".3f"),
    ("latency_ms_b8", "ms/clip b8", ".0f"),
    ("rtf_b8", "RTF b8", ".3f"),
    ("wer", "WER %", ".2f"),
    *[(column, q.header, q.fmt) for column, q in QUALITY.items()],
    ("peak_training_mib", "train peak MiB", ".0f"),
    ("frozen_llm", "frozen LLM / its Linear MiB", ""),
    ("losses", "loss first->last", ""),
    ("dev_loss", "dev loss", ".3f"),
]


def quality_header(rows: list[dict], quality_clips: int) -> list[str]:
    """What the quality columns measured, said once: each benchmark's metric and n, and what was skipped and why."""
    scored = []
    for column, q in QUALITY.items():
        counts = sorted({r["quality_n"][column] for r in rows if column in r.get("quality_n", {})})
        if counts:
            scored.append(f"{q.label} n={'/'.join(map(str, counts))}")
    lines = [
        f"quality on the test split, the first {quality_clips} examples of each synthetic-suite benchmark, "
        f"scored as qaudio eval scores them: {', '.join(scored) or 'none scored'}"
    ]
    # each reason once (the rows share the data), its first line (the rest, e.g. how to make the data, is in the JSON)
    reasons = dict.fromkeys(reason.splitlines()[0] for r in rows for reason in r.get("quality_skipped", {}).values())
    lines += [f"skipped: {reason}" for reason in reasons]
    return lines


def _against_targets(rows: dict[str, dict]) -> list[str]:
    lines, fp32 = [], rows.get("fp32")
    if fp32 and "int8" in rows:
        for name in ("int8", "int8-all"):
            r = rows.get(name)
            if not r:
                continue
            speed = {b: fp32[f"latency_ms_b{b}"] / r[f"latency_ms_b{b}"] for b in BATCH_SIZES}
            memory = r["peak_inference_mib"] / fp32["peak_inference_mib"]
            weights = r["weights_mib"] / fp32["weights_mib"]
            points = r["wer"] - fp32["wer"]
            ok = (
                min(speed.values()) >= TARGETS["int8_throughput_x"]
                and memory <= TARGETS["int8_memory_x"]
                and abs(points) <= TARGETS["int8_wer_points"]
            )
            lines.append(
                f"{name} vs fp32: throughput {speed[1]:.2f}x (b1) {speed[8]:.2f}x (b8) [target >= 1.5x], "
                f"inference peak {memory:.2f}x, weights {weights:.2f}x [target <= 0.5x], WER "
                f"{points:+.2f} points [target within 0.5]: {'met' if ok else 'MISSED'}"
            )
    if "lora" in rows and "qlora" in rows:
        q, lo = rows["qlora"], rows["lora"]
        x = q["frozen_llm_mib"] / lo["frozen_llm_mib"]
        lines.append(
            f"QLoRA frozen LLM {q['frozen_llm_mib']:.2f} MiB vs bf16 LoRA's {lo['frozen_llm_mib']:.2f} MiB: "
            f"{x:.2f}x [target <= 0.4x]: {'met' if x <= TARGETS['qlora_frozen_llm_x'] else 'MISSED'} "
            f"(its Linear layers alone: {q['frozen_llm_linear_mib'] / lo['frozen_llm_linear_mib']:.2f}x; the "
            "embedding stays bf16); whole-process training peak "
            f"{q['peak_training_mib'] / lo['peak_training_mib']:.2f}x (both fp32 runs)"
        )
    lines += _student_against_teacher(rows)
    return lines


def _student_against_teacher(rows: dict[str, dict]) -> list[str]:
    """The distillation target: a student at half the LLM size within 1.5 WER points of its teacher."""
    lines, teacher = [], rows.get("fp32")
    for name in DISTILLED:
        r = rows.get(name)
        if not r or not teacher:
            continue
        size = r["student_llm_parameters"] / r["teacher_llm_parameters"]
        points = r["wer"] - teacher["wer"]
        ok = size <= 0.5 + 1e-9 and points <= TARGETS["student_wer_points"]
        lines.append(
            f"{name} vs its teacher (fp32): LLM {size:.2f}x the parameters, WER {points:+.2f} points "
            f"[target: half the LLM, within {TARGETS['student_wer_points']:g}]: {'met' if ok else 'MISSED'}"
        )
    return lines


def _distill_student(args: argparse.Namespace, base: dict, model_dir: str, corpus: Path, work: Path) -> dict:
    llm = json.loads((Path(model_dir) / "config.json").read_text())["model"]["llm"]
    sizes = {  # half the layers and half the MLP width: about half the LLM's parameters
        "num_layers": args.student_layers or max(1, llm["num_layers"] // 2),
        "intermediate_size": args.student_mlp or max(1, llm["intermediate_size"] // 2),
    }
    return common.run_worker(
        MODULE,
        {
            **base,
            "kind": "distill",
            "model": model_dir,
            "corpus": str(corpus),
            "student_llm": sizes,
            "steps": args.distill_steps,
            "batch_size": args.train_batch_size,
            "alpha": args.distill_alpha,
            "temperature": args.distill_temperature,
            "lr": args.distill_lr,
            "output_dir": str(work / "student"),
        },
        timeout_s=3600,
    )


def augmentation_row(name: str, base: dict, infer: dict, model_dir: str, corpus: Path, args, work: Path) -> dict:
    """One augmentation on/off row: train (fresh process), then the inference figures of the result."""
    trained = common.run_worker(
        MODULE,
        {
            **base,
            "kind": "augment",
            "variant": name,
            "model": model_dir,
            "corpus": str(corpus),
            "steps": args.train_steps,
            "batch_size": args.train_batch_size,
            "output_dir": str(work / name),
        },
        timeout_s=3600,
    )
    row = {**trained, **common.run_worker(MODULE, {**infer, "variant": name, "model": trained["model_dir"]})}
    row["losses"] = f"{row['first_loss']:.2f}->{row['last_loss']:.2f}"
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", help="a synthetic corpus directory (qaudio synth --out DIR)")
    parser.add_argument(
        "--model",
        default=None,
        help="the base: a saved model directory (default: train the tiny preset for --base-steps here)",
    )
    parser.add_argument("--base-steps", type=int, default=200, help="steps to train the tiny base without --model")
    parser.add_argument(
        "--variants",
        default=",".join([*VARIANTS, *TRAINED, *AUGMENTED, *DISTILLED]),
        help=f"rows, from {', '.join([*VARIANTS, *TRAINED, *AUGMENTED, *DISTILLED])} (default: all)",
    )
    parser.add_argument("--clips", type=int, default=32, help="held-out English ASR clips (default 32)")
    parser.add_argument(
        "--quality-clips",
        type=int,
        default=32,
        help="test examples of each of captioning (CIDEr-D), emotion and scene (accuracy) scored per variant "
        "(default 32; 0: no quality columns besides WER)",
    )
    parser.add_argument("--new-tokens", type=int, default=24, help="greedy decoding cap per clip (default 24)")
    parser.add_argument("--train-steps", type=int, default=20, help="LoRA / QLoRA fine-tuning steps (default 20)")
    parser.add_argument("--train-batch-size", type=int, default=8)
    parser.add_argument(
        "--student-layers", type=int, default=0, help="the distilled student's LLM layers (default: half the base's)"
    )
    parser.add_argument(
        "--student-mlp", type=int, default=0, help="the student's LLM MLP width (default: half the base's)"
    )
    parser.add_argument(
        "--student",
        metavar="DIR",
        help="the student rows measure this model, distilled from --model elsewhere (qaudio distill), "
        "instead of distilling one here",
    )
    parser.add_argument(
        "--distill-steps", type=int, default=200, help="distillation steps of the student (default 200)"
    )
    parser.add_argument("--distill-alpha", type=float, default=0.5, help="weight of the KL term (default 0.5)")
    parser.add_argument("--distill-temperature", type=float, default=2.0, help="KL temperature (default 2)")
    parser.add_argument(
        "--distill-lr", type=float, default=1e-3, help="the student's peak learning rate (default 1e-3)"
    )
    parser.add_argument(
        "--dual-tower",
        default="tiny-random",
        help="the dual row's AST tower: tiny-random (default), a hub id or a local AST directory",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        common.write_json(args.result, WORKERS[spec["kind"]](spec))
        return 0
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [
        v for v in chosen if v not in VARIANTS and v not in TRAINED and v not in AUGMENTED and v not in DISTILLED
    ]
    if unknown:
        print(
            f"error: unknown variant(s) {', '.join(unknown)}; expected some of "
            f"{', '.join([*VARIANTS, *TRAINED, *AUGMENTED, *DISTILLED])}",
            file=sys.stderr,
        )
        return 2
    if args.quality_clips < 0:
        print(
            f"error: --quality-clips must be >= 0 (0 turns the columns off), got {args.quality_clips}", file=sys.stderr
        )
        return 2
    if not args.corpus:
        print("error: --corpus is required: a synthetic corpus directory (qaudio synth --out DIR)", file=sys.stderr)
        return 2
    corpus = Path(args.corpus).resolve()
    clips = english_asr_clips(corpus, args.clips)
    info = common.machine_info(torch.device("cpu"))
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="qaudio-compress-"))
    base = {"threads": args.threads, "seed": args.seed}
    try:
        model_dir = args.model and str(Path(args.model).resolve())
        if model_dir is None:
            print(f"training the tiny base for {args.base_steps} steps ...", file=sys.stderr, flush=True)
            model_dir = common.run_worker(
                MODULE,
                {
                    **base,
                    "kind": "base",
                    "corpus": str(corpus),
                    "steps": args.base_steps,
                    "output_dir": str(work / "base"),
                },
                timeout_s=3600,
            )["model_dir"]
        rows: dict[str, dict] = {}
        student: dict | None = None  # the distilled student, trained once for its rows
        infer = {
            **base,
            "kind": "infer",
            "clips": clips,
            "batch_sizes": list(BATCH_SIZES),
            "new_tokens": args.new_tokens,
            "corpus": str(corpus),
            "quality_clips": args.quality_clips,
        }
        for name in chosen:
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            if name in TRAINED:
                trained = common.run_worker(
                    MODULE,
                    {
                        **base,
                        "kind": "train",
                        "mode": name,
                        "model": model_dir,
                        "corpus": str(corpus),
                        "steps": args.train_steps,
                        "batch_size": args.train_batch_size,
                        "dual_tower": args.dual_tower,
                        "output_dir": str(work / name),
                    },
                    timeout_s=3600,
                )
                row = {
                    **trained,
                    **common.run_worker(MODULE, {**infer, "variant": name, "model": trained["model_dir"]}),
                }
                row["frozen_llm"] = f"{row['frozen_llm_mib']:.2f} / {row['frozen_llm_linear_mib']:.2f}"
                row["losses"] = f"{row['first_loss']:.2f}->{row['last_loss']:.2f}"
            elif name in DISTILLED:
                if student is None:  # one student for both rows: given (--student), or distilled here
                    given = args.student and _student_facts(Path(args.student).resolve(), model_dir)
                    student = given or _distill_student(args, base, model_dir, corpus, work)
                row = {
                    **student,
                    **common.run_worker(MODULE, {**infer, "variant": name, "model": student["model_dir"]}),
                }
            elif name in AUGMENTED:
                row = augmentation_row(name, base, infer, model_dir, corpus, args, work)
            else:
                row = common.run_worker(MODULE, {**infer, "variant": name, "model": model_dir})
            rows[name] = row
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    from qaudio.hardware import cpu_has_bf16

    command = f"python -m {MODULE} " + " ".join(argv if argv is not None else sys.argv[1:])
    audio = sum(c["seconds"] for c in clips)
    print(
        f"\nlighter variants of {model_dir}: {len(clips)} English ASR test clips ({audio:.0f} s), greedy, "
        f"<= {args.new_tokens} tokens"
    )
    print(common.machine_line(info, args.threads))
    columns = COLUMNS if args.quality_clips else [c for c in COLUMNS if c[0] not in QUALITY]
    if args.quality_clips:
        print("\n".join(quality_header(list(rows.values()), args.quality_clips)))
    print(common.format_table(list(rows.values()), columns))
    if "bf16" in rows and not cpu_has_bf16():
        print("bf16: this CPU has no bf16 matrix units (no AVX512-BF16 or AMX): bf16 runs emulated, hence slow")
    if any(name in TRAINED for name in rows):
        print(
            f"lora/qlora: the base's config trained {args.train_steps} steps (batch {args.train_batch_size}, fp32, "
            "asr) with --train-llm lora / qlora (whisper-only / dual: the base's own LLM mode, without / with "
            f"the AST tower {args.dual_tower}); train peak = whole process"
        )
    if any(name in AUGMENTED for name in rows):
        print(
            f"augment-off/-on: the base's config trained {args.train_steps} steps (batch {args.train_batch_size}, "
            f"fp32, asr) from its initial weights, without and with --augment {AUGMENTED['augment-on']}; "
            "dev loss on 64 clean dev clips"
        )
    if any(name in DISTILLED for name in rows) and args.student:
        print(f"student: {args.student}, distilled from the base elsewhere")
    elif any(name in DISTILLED for name in rows):
        print(
            f"student: the base's config with {args.student_layers or 'half its'} LLM layers and "
            f"{args.student_mlp or 'half its'} MLP width, distilled from the base "
            f"{args.distill_steps} steps (batch {args.train_batch_size}, fp32, asr, alpha {args.distill_alpha:g}, "
            f"T {args.distill_temperature:g}, lr {args.distill_lr:g})"
        )
    targets = _against_targets(rows)
    for line in targets:
        print(line)
    warning = common.load_warning(info, rows.values())
    if warning:
        print(warning)
    print(f"total time {elapsed:.0f} s")
    if args.json:
        common.write_json(
            args.json,
            {
                "benchmark": "compress",
                "command": command,
                "machine": info,
                "elapsed_s": elapsed,
                "base_model": model_dir,
                "quality_clips": args.quality_clips,
                "quality_benchmarks": {
                    column: {"benchmark": q.benchmark, "value": q.value} for column, q in QUALITY.items()
                },
                "rows": rows,
                "targets": targets,
                **({"warning": warning} if warning else {}),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
