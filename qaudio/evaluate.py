"""``qaudio eval``: run a model over an evaluation suite and write one multi-benchmark report.

For each benchmark of the suite (:mod:`qaudio.suite`; built-ins in ``eval_suites/``):

1. read the split through its corpus recipe (:func:`qaudio.recipe.load_examples`); a corpus
   that is not on disk makes the row *skipped*, with the reason, never a silent omission;
2. answer every example with the model, batched (:meth:`qaudio.infer.Pipeline.run_examples`;
   classification is constrained to the task's label set), timing the run: real-time factor
   = compute seconds / audio seconds, generated tokens per second, and the peak memory of that
   run alone (:mod:`qaudio.profiling`: CUDA's peak allocation on GPU, the resident set's
   high-water mark on CPU);
   every answer's degeneration flags (:mod:`qaudio.degeneration`) are kept and counted;
3. run the suite's peers on the same audio (:mod:`qaudio.peers`), e.g. Whisper for ASR;
4. score every system with the task's metric family and the benchmark's profile
   (:mod:`qaudio.metrics`), with 95% bootstrap intervals (Koehn, EMNLP 2004), and compute
   chance levels by scoring constant predictors with the same metric: the most frequent
   label, answer or caption of the test set (and 1/labels for classification).

:mod:`qaudio.report` writes ``report.json`` (with every prediction), ``report.md`` and
``report.html``. ``qaudio eval --rescore report.json --out DIR`` recomputes steps 4 and the
report from the stored predictions, without a model. ``--manifest FILE`` scores any manifest
in the example schema, one benchmark per (task, language pair), without writing a suite.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import math
import platform
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, flags
from .config import resolve_data_root
from .data import Example, ManifestError, read_manifest
from .degeneration import count_flags
from .flags import option
from .metrics import MetricFamily, get_metric
from .profiling import Measurement, measure
from .report import FORMAT, MODEL, read_report, render_markdown, write_report
from .run import GuardOptions, ModelOptions
from .specs import get_suite, get_task, registry
from .suite import Benchmark, Peer, Suite
from .task import ClassificationTask, Task

if TYPE_CHECKING:
    from .infer import Pipeline
    from .peers import WhisperPeer
    from .result import Result

BOOTSTRAP = 1000  # resamples for the 95% intervals


def metric_options(task: Task) -> dict:
    """Options the task's metric needs besides predictions and references."""
    return task.metric_options()


# ---- Loading benchmarks ----------------------------------------------------------------------


@dataclasses.dataclass
class Loaded:
    """A benchmark resolved against the data: its examples, or why it is skipped."""

    benchmark: Benchmark
    task: Task
    profile: str  # the resolved metric profile
    examples: list[Example] = dataclasses.field(default_factory=list)
    language: str | None = None  # the examples' text language
    reason: str | None = None  # set when skipped
    data_warnings: list[str] = dataclasses.field(default_factory=list)  # rows the recipe left out


def resolve(benchmark: Benchmark) -> tuple[Task, str]:
    """The benchmark's task and metric profile; unknown names fail before anything runs."""
    task = get_task(benchmark.task)
    family = get_metric(task.metric)
    try:
        return task, family.check_profile(benchmark.profile or task.profile)
    except ValueError as e:
        raise ValueError(f"benchmark {benchmark.name!r}: {e}") from None


def load_benchmark(benchmark: Benchmark, data_root: str | Path | None = None, limit: int | None = None) -> Loaded:
    """Read a benchmark's examples; missing or malformed data gives a skipped Loaded with the reason.

    Names (recipe, split, task, profile) are checked first and raise: a wrong name is a bug in
    the suite, not missing data.
    """
    from .recipe import RecipeWarning, load_examples

    task, profile = resolve(benchmark)
    loaded = Loaded(benchmark, task, profile)
    cap = min(x for x in (benchmark.limit, limit, math.inf) if x is not None)
    root = benchmark.root_path(data_root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecipeWarning)
        try:
            # With a language filter the cap applies after filtering.
            source = load_examples(
                benchmark.recipe,
                root,
                benchmark.split,
                task.name,
                None if benchmark.audio_lang or benchmark.text_lang or cap == math.inf else int(cap),
                {k: str(v) for k, v in benchmark.recipe_options.items()} or None,
            )
            examples = list(source)
        except FileNotFoundError as e:
            loaded.reason = f"data not found: {e}"
            return loaded
        except ManifestError as e:
            loaded.reason = f"malformed data: {e}"
            return loaded
    loaded.data_warnings = [str(w.message) for w in caught if issubclass(w.category, RecipeWarning)]
    for field_name in ("audio_lang", "text_lang"):
        wanted = getattr(benchmark, field_name)
        if wanted:
            examples = [ex for ex in examples if getattr(ex, field_name) == wanted]
    if not examples:
        loaded.reason = (
            f"no examples with audio language {benchmark.audio_lang or 'any'} and text language "
            f"{benchmark.text_lang or 'any'} in {root} ({benchmark.split})"
        )
        return loaded
    if cap != math.inf:
        examples = examples[: int(cap)]
    languages = Counter(ex.text_lang for ex in examples)
    if len(languages) > 1:
        loaded.reason = (
            f"examples in several text languages ({', '.join(f'{k}: {v}' for k, v in languages.items())}); "
            "set the benchmark's text_lang to score one per row"
        )
        return loaded
    loaded.examples, loaded.language = examples, next(iter(languages))
    return loaded


def manifest_suite(path: str | Path) -> Suite:
    """A suite with one benchmark per (task, audio language, text language) of a manifest.

    Each is scored with its task's metric family at the family's default profile.
    """
    path = Path(path).resolve()
    groups = Counter((ex.task, ex.audio_lang, ex.text_lang) for ex in read_manifest(path))
    if not groups:
        raise ValueError(f"manifest {path} holds no examples")
    tasks = Counter(task for task, _, _ in groups)

    def name(task: str, audio_lang: str, text_lang: str) -> str:
        if tasks[task] == 1:
            return f"{path.stem} {task}"
        return f"{path.stem} {task} ({audio_lang}" + (f"->{text_lang})" if text_lang != audio_lang else ")")

    benchmarks = [
        Benchmark(
            name=name(*key),
            recipe="manifest",
            root=str(path),
            split=path.stem,
            task=key[0],
            audio_lang=key[1],
            text_lang=key[2],
        )
        for key in sorted(groups)
    ]
    return Suite(name=path.name, benchmarks=tuple(benchmarks), description=f"every example of {path}")


# ---- Running systems -------------------------------------------------------------------------


def _timing(m: Measurement, examples: list[Example], tokens: int | None) -> dict:
    """A report's timing entry from the measured phase (its own time and peak memory)."""
    audio, seconds = float(sum(ex.duration for ex in examples)), m.seconds
    return {
        "examples": len(examples),
        "audio_seconds": round(audio, 3),
        "compute_seconds": round(seconds, 4),
        "real_time_factor": seconds / audio if audio else None,
        "generated_tokens": tokens,
        "tokens_per_second": tokens / seconds if tokens is not None and seconds > 0 else None,
        "peak_memory_bytes": m.peak_bytes,
        "peak_memory_kind": m.method,
        "device": m.device,
    }


def prediction(example_id: str, result: Result) -> dict:
    """A Result as a report stores it (one shape for the model and its peers)."""
    d = result.to_dict()
    return {
        "id": example_id,
        "text": d["text"],
        "raw": d["raw"],
        "label": d["label"],
        "words": d["words"],
        "windows": d["timing"].get("windows", 1),
        "problems": d["problems"],
        "error": d["error"],
        "flags": d["flags"],
        "no_speech_prob": d["no_speech_prob"],
    }


def _system_entry(results: list, examples: list[Example], m: Measurement) -> dict:
    """A report ``results`` entry from one system's Results (in the examples' order)."""
    counts = [r.timing.get("generated_tokens") for r in results if r.ok]
    tokens = None if any(c is None for c in counts) else sum(counts)  # None: nothing generated (label scoring)
    predictions = [prediction(ex.id, r) for ex, r in zip(examples, results, strict=True)]
    return {
        "status": "ok",
        "timing": _timing(m, examples, tokens),
        "predictions": predictions,
        "failed": sum(p["error"] is not None for p in predictions),
        "flags": dict(count_flags(predictions)),
    }


def answer_labels(task: Task) -> list[str] | None:
    """The label set a classification task's answers are chosen from (label scoring); None: generated."""
    return list(task.labels) if isinstance(task, ClassificationTask) and task.labels else None


def run_model(model: Pipeline, loaded: Loaded, batch_size: int, progress: bool = True) -> dict:
    """The model's predictions and timing for one benchmark (a report ``results`` entry)."""
    task, examples = loaded.task, loaded.examples
    labels = answer_labels(task)
    device = str(model.device)
    with measure("model", device) as m:
        results = model.run_examples(examples, task, batch_size=batch_size, labels=labels, progress=progress)
    return {**_system_entry(results, examples, m), "generation": _generation(model, loaded, labels)}


def _generation(model: Pipeline, loaded: Loaded, labels: list[str] | None) -> dict:
    """How the predictions were made (decoding and a hash of the prompts), for the metric's provenance."""
    import hashlib

    prompts = sorted({model.prompt(ex.request(loaded.task)) for ex in loaded.examples})
    decoding = (
        {"method": "label scoring: the most likely label of the task's label set", "labels": labels}
        if labels
        else {
            "method": "greedy",
            "do_sample": False,
            "num_beams": 1,
            "max_new_tokens": model.max_new_tokens or loaded.task.max_new_tokens,
        }
    )
    return {
        "decoding": decoding,
        "on_degenerate": model.on_degenerate,
        "prompt_style": model.style,
        "prompts": len(prompts),
        "prompt_sha256": hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest(),
    }


def peer_applies(peer: Peer, loaded: Loaded) -> bool:
    """Whether ``peer`` runs on this benchmark: its task, and audio in languages it handles."""
    if loaded.task.name not in peer.tasks:
        return False
    return peer.languages is None or {ex.audio_lang for ex in loaded.examples} <= set(peer.languages)


def run_peer(runner: WhisperPeer, loaded: Loaded, batch_size: int) -> dict:
    """A peer's predictions and timing for one benchmark: its Results, stored as the model's are."""
    device = str(runner.device)
    with measure("peer", device) as m:
        results = runner.run(loaded.examples, loaded.task, batch_size)
    return _system_entry(results, loaded.examples, m)


# ---- Scoring (shared by a live run and --rescore) --------------------------------------------


def chance_baselines(
    task: Task, family: MetricFamily, profile: str, language: str | None, examples: list[Example]
) -> list[dict]:
    """Chance levels of one benchmark, computed by scoring constant predictors with its metric."""
    if family.chance is None:  # error rates and BLEU have no useful chance level
        return []
    refs = [family.reference(ex) for ex in examples]
    pool = [r for ref in refs for r in (ref if isinstance(ref, list) else [ref])]
    constant = Counter(pool).most_common(1)[0][0]  # ties: the first seen
    options = metric_options(task)
    scored = family([constant] * len(refs), refs, profile=profile, language=language or "en", **options)
    out = []
    if family.uniform_chance:
        labels = options.get("labels") or sorted(set(pool))
        out.append(
            {
                "name": f"uniform 1/{len(labels)}",
                "prediction": None,
                "detail": f"a uniform random guess over {len(labels)} labels",
                "values": {scored.primary: 100.0 / len(labels)},
            }
        )
    out.append(
        {
            "name": family.chance,
            "prediction": constant,
            "detail": f"always predicting {constant!r}, the most frequent in this test set's references",
            "values": {k: v for k, v in scored.to_dict()["values"].items() if v is not None},
        }
    )
    return out


def score_entry(entry: dict, bootstrap: int = BOOTSTRAP, seed: int = 0, chance: bool = True) -> dict:
    """Fill a benchmark entry's metrics, chance levels and analysis from its stored predictions.

    ``chance=False`` leaves the chance levels out (``[]``): they cost one more metric run per
    benchmark (for captions, METEOR's Java program again), which a caller after the systems'
    values alone can save."""
    task = get_task(entry["task_spec"])
    family = get_metric(task.metric)
    examples = [Example(**d) for d in entry["examples"]]
    refs = [family.reference(ex) for ex in examples]
    scored, preds = {}, {}
    for system, res in entry["results"].items():
        if res["status"] != "ok":
            continue
        ids = [p["id"] for p in res["predictions"]]
        if ids != [ex.id for ex in examples]:
            raise ValueError(
                f"benchmark {entry['name']!r}, system {system!r}: the predictions' ids do not match "
                "the examples' ids one to one, in order"
            )
        preds[system] = [family.prediction(p) for p in res["predictions"]]
        try:
            result = family(
                preds[system],
                refs,
                profile=entry["profile"],
                language=entry["language"] or "en",
                **metric_options(task),
            )
        except ValueError as e:  # e.g. a reference label outside the task's label set
            res.update(status="skipped", reason=f"could not be scored: {e}")
            res.pop("metric", None)
            continue
        res["metric"] = result.to_dict(bootstrap=bootstrap, seed=seed)
        res["metric"]["provenance"]["generation"] = res.get("generation") or "not recorded with these predictions"
        scored[system] = result
    entry["chance"] = chance_baselines(task, family, entry["profile"], entry["language"], examples) if chance else []
    analysis = {
        name: analyse(examples, {s: preds[s] for s in scored}, scored) for name, analyse in family.analyses.items()
    }
    entry["analysis"] = {k: v for k, v in analysis.items() if v}
    return entry


# ---- The report ------------------------------------------------------------------------------


def _environment(device: str | None) -> dict:
    import torch
    import transformers

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device or "cpu",
    }
    if device and device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
    else:
        env["cpu_threads"] = torch.get_num_threads()
    return env


def benchmark_entry(loaded: Loaded) -> dict:
    """A report ``benchmarks`` entry for one loaded benchmark, before any system ran: fill its
    ``results`` (e.g. with :func:`run_model` under :data:`qaudio.report.MODEL`), then :func:`score_entry`."""
    b = loaded.benchmark
    entry: dict[str, Any] = {
        "name": b.name,
        "task": loaded.task.name,
        "task_spec": b.task,
        "metric": loaded.task.metric,
        "recipe": b.recipe,
        "root": b.root,
        "split": b.split,
        "profile": loaded.profile,
        "language": loaded.language,
        "status": "skipped" if loaded.reason else "ok",
        "reason": loaded.reason,
        "num_examples": len(loaded.examples),
        "audio_seconds": round(sum(ex.duration for ex in loaded.examples), 3),
        "data_warnings": loaded.data_warnings,
        "results": {},
    }
    if not loaded.reason:
        entry["examples"] = [dataclasses.asdict(ex) for ex in loaded.examples]
    return entry


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass
class EvalConfig(GuardOptions, ModelOptions):
    """``qaudio eval``'s options; :func:`evaluate` reads the model and run settings from it."""

    model: str | None = option(None, "the model: a directory written by save_pretrained (or a hub id)")
    suite: str | None = option(
        None,
        f"suite name ({', '.join(registry('eval_suites')) or 'none yet'}) or the path of a .py file that sets SUITE",
    )
    manifest: str | None = option(
        None, "score a JSONL manifest in qaudio's schema instead of a suite (one benchmark per task and language pair)"
    )
    rescore: str | None = option(
        None,
        "recompute the metrics and the report from a report.json's predictions; runs no model",
        metavar="REPORT_JSON",
    )
    data_root: str | None = option(
        None, "folder holding the corpora, each under its conventional name (default: $QAUDIO_DATA, else ./data)"
    )
    limit: int | None = option(None, "score at most N examples per benchmark")
    batch_size: int = option(16, "examples per forward pass (default 16)")
    peers: bool = option(True, "do not run the suite's peer models")
    bootstrap: int = option(BOOTSTRAP, f"bootstrap resamples for 95% intervals (default {BOOTSTRAP})")
    quiet: bool = option(False, "no progress output")
    out: str = option("", "folder for report.json, report.md and report.html", required=True)

    def __post_init__(self) -> None:
        ModelOptions.__post_init__(self)
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be a positive number of examples, got {self.limit}")
        if self.bootstrap < 0:
            raise ValueError(f"--bootstrap must be >= 0, got {self.bootstrap}")


def evaluate(suite: Suite, cfg: EvalConfig, suite_source: str | None = None) -> dict:
    """Run ``cfg.model`` (a saved model directory or hub id) over ``suite``; returns the report dict."""
    from .infer import load
    from .training.summary import read_summary

    model, progress = cfg.model, not cfg.quiet
    if not model:
        raise ValueError("--model DIR is required (a directory written by save_pretrained, or a hub id)")
    loaded = [
        load_benchmark(b, cfg.data_root, cfg.limit) for b in suite.benchmarks
    ]  # names checked before the model loads
    for item in loaded:
        if item.reason:
            _log(progress, f"qaudio eval: {item.benchmark.name}: skipped: {item.reason.splitlines()[0]}")
    audio_model = load(
        model,
        device=cfg.device,
        dtype=cfg.dtype,
        max_new_tokens=cfg.max_new_tokens,  # None: each task's cap
        quantize=cfg.quantize,
        on_degenerate=cfg.on_degenerate,
        detect_no_speech=cfg.speech_check,
    )
    device = str(audio_model.device)
    systems: list[dict[str, Any]] = [{"name": MODEL, "kind": "model", "path": str(model)}]
    systems += (
        [
            {
                "name": p.name,
                "kind": "peer",
                "runner": p.runner,
                "source": p.source,
                "tasks": list(p.tasks),
                "note": p.note,
            }
            for p in suite.peers
        ]
        if cfg.peers
        else []
    )
    runners: dict[str, Any] = {}
    benchmarks = []
    for k, item in enumerate(loaded, 1):
        entry = benchmark_entry(item)
        benchmarks.append(entry)
        if item.reason:
            continue
        _log(progress, f"qaudio eval: [{k}/{len(loaded)}] {item.benchmark.name}: {len(item.examples)} examples")
        entry["results"][MODEL] = run_model(audio_model, item, cfg.batch_size, progress)
        for peer in suite.peers if cfg.peers else ():
            if not peer_applies(peer, item):
                continue
            try:
                if peer.name not in runners:
                    from .peers import load_peer

                    runners[peer.name] = load_peer(peer.runner, peer.source, device)
                entry["results"][peer.name] = run_peer(runners[peer.name], item, cfg.batch_size)
            except (ImportError, FileNotFoundError, ValueError) as e:  # e.g. the weights package is not installed
                entry["results"][peer.name] = {"status": "skipped", "reason": f"peer could not run: {e}"}
        score_entry(entry, cfg.bootstrap)
        metric = entry["results"][MODEL].get("metric")
        if metric:
            _log(
                progress,
                f"qaudio eval: {item.benchmark.name}: {metric['primary']} = {metric['values'].get(metric['primary'])}",
            )
    model_config = audio_model.model.config
    training = read_summary(model) if Path(model).is_dir() else None  # how much training the model had
    return {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "qaudio_version": __version__,
        "suite": {"name": suite.name, "description": suite.description, "source": suite_source or suite.name},
        "model": {
            "path": str(model),
            "device": device,
            "dtype": cfg.dtype or "float32",
            "parameters": sum(p.numel() for p in audio_model.model.parameters()),
            "config": model_config.to_dict(),
        },
        "settings": {
            "batch_size": cfg.batch_size,
            "limit": cfg.limit,
            "bootstrap": cfg.bootstrap,
            "max_new_tokens": cfg.max_new_tokens,
            "on_degenerate": cfg.on_degenerate,
            "detect_no_speech": cfg.speech_check,
            "data_root": str(resolve_data_root(cfg.data_root).absolute()),
            "peers": cfg.peers,
        },
        "environment": _environment(device),
        "training": training,
        "systems": systems,
        "benchmarks": benchmarks,
    }


def rescore(report: dict, bootstrap: int = BOOTSTRAP) -> dict:
    """A copy of ``report`` with every metric, chance level and plot recomputed from its predictions."""
    out = copy.deepcopy(report)
    for entry in out["benchmarks"]:
        if entry["status"] == "ok":
            for res in entry["results"].values():
                if res.get("predictions") is not None:
                    res["status"], res["reason"] = "ok", None  # a metric that failed before may work now
            score_entry(entry, bootstrap)
    out["rescored"] = {
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "from_created": report["created"],
        "qaudio_version": __version__,
    }
    out["settings"] = {**out.get("settings", {}), "bootstrap": bootstrap}
    return out


# ---- The command -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_arguments(parser, EvalConfig)


def _check_args(cfg: EvalConfig) -> None:
    chosen = [
        flag
        for flag, value in (("--suite", cfg.suite), ("--manifest", cfg.manifest), ("--rescore", cfg.rescore))
        if value
    ]
    if len(chosen) != 1:
        raise ValueError(
            "give exactly one of --suite NAME|FILE, --manifest FILE or --rescore REPORT_JSON"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if cfg.rescore and cfg.model:
        raise ValueError("--rescore recomputes metrics from stored predictions and runs no model; drop --model")
    if not cfg.rescore and not cfg.model:
        raise ValueError("--model DIR is required (a directory written by save_pretrained, or a hub id)")


def main(args: argparse.Namespace) -> int:
    cfg = flags.from_args(EvalConfig, args)
    _check_args(cfg)
    if cfg.rescore:
        report = rescore(read_report(cfg.rescore), cfg.bootstrap)
    else:
        if cfg.manifest:
            suite, source = manifest_suite(cfg.manifest), str(Path(cfg.manifest).resolve())
        elif cfg.suite is None:
            raise ValueError("give a suite (--suite NAME) or a manifest (--manifest FILE) to evaluate")
        else:
            suite, source = get_suite(cfg.suite), cfg.suite
            if not isinstance(suite, Suite):
                raise ValueError(f"{cfg.suite}: SUITE must be a qaudio.suite.Suite, got {type(suite).__name__}")
        report = evaluate(suite, cfg, suite_source=source)
    paths = write_report(report, cfg.out)
    print(render_markdown(report))
    print(f"report: {paths['html'].resolve()}")
    return 0
