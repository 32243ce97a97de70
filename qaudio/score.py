"""``qaudio score``: score any system's outputs with qaudio's metrics and conventions.

Reads a JSONL file, one example per line::

    {"prediction": "hello world", "reference": "Hello world.", "text_lang": "en"}

``reference`` is a string, or a list of strings for captions (all references of the clip)
and multi-reference translation. ``text_lang`` (else ``audio_lang``, else ``--language``)
picks the language conventions: CER for Chinese, the BLEU tokenizer for the target
language. Word timestamps (``srwt``) take ``prediction_words`` / ``reference_words`` as
``[[word, start_s, end_s], ...]``, or ``prediction`` / ``reference`` as time-token text
(``<|0.00|>hello<|0.32|>``). Files that mix languages are scored per language. The same
metric code scores qaudio's own evaluations, so numbers are comparable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import flags
from .flags import option
from .metrics import METRICS, MetricFamily, MetricResult, get_metric
from .metrics.base import display_name, format_value
from .specs import get_task, registry
from .task import Task


@dataclass
class Record:
    prediction: str | list  # text, or [[word, start_s, end_s], ...] for timestamps
    reference: str | list
    language: str | None  # text_lang, else audio_lang, else None
    prompt: str | None = None  # the prompt the predictions answered, when the file records it


_PROFILES = "; ".join(f"{name}: {', '.join(f.profiles)}" for name, f in METRICS.items())


@dataclass
class ScoreConfig:
    """``qaudio score``'s options."""

    file: str = option("", 'JSONL file: one {"prediction": ..., "reference": ...} object per line', positional=True)
    task: str = option(
        "", f"task whose metric scores the file: {', '.join(registry('tasks'))}, or a task .py file", required=True
    )
    profile: str | None = option(
        None, f"metric profile (default: the task's, an anchor's convention, named in the output). {_PROFILES}"
    )
    language: str | None = option(None, "language for records without text_lang/audio_lang (default: en)")
    json: bool = option(False, "print the metrics as one JSON object")
    bootstrap: int = option(1000, "bootstrap resamples for 95% intervals (0: none)")
    seed: int = option(0, "bootstrap seed")

    def __post_init__(self) -> None:
        if self.bootstrap < 0:
            raise ValueError(f"--bootstrap must be >= 0, got {self.bootstrap}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_arguments(parser, ScoreConfig)


def _field(record: dict, name: str, where: str, multi: bool) -> str | list:
    value = record[name]
    if isinstance(value, str):
        return value
    if multi and isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    expected = "a string or a non-empty list of strings" if multi else "a string"
    raise ValueError(f"{where}: field {name!r} must be {expected}, got {json.dumps(value)[:80]}")


def _timestamp_field(record: dict, side: str, where: str) -> str | list:
    words_key = f"{side}_words"
    if words_key in record:
        words = record[words_key]
        if not isinstance(words, list):
            raise ValueError(f"{where}: field {words_key!r} must be [[word, start_s, end_s], ...]")
        return words
    if side in record:
        return _field(record, side, where, multi=False)
    raise ValueError(f"{where}: needs {words_key!r} ([[word, start_s, end_s], ...]) or {side!r} (time-token text)")


def read_records(path: str | Path, family: MetricFamily | str) -> list[Record]:
    """Parse and check a predictions file for ``family``; errors name the line and the field."""
    family = get_metric(family) if isinstance(family, str) else family
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file {path} does not exist")
    records = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{where}: expected a JSON object with 'prediction' and 'reference', got {type(record).__name__}"
                )
            if family.timed_words:
                prediction = _timestamp_field(record, "prediction", where)
                reference = _timestamp_field(record, "reference", where)
            else:
                missing = [k for k in ("prediction", "reference") if k not in record]
                if missing:
                    raise ValueError(
                        f"{where}: missing field(s) {', '.join(missing)}; each line needs 'prediction' and 'reference'"
                    )
                prediction = _field(record, "prediction", where, multi=False)
                reference = _field(record, "reference", where, multi=family.multi_reference)
            language = record.get("text_lang") or (
                record.get("audio_lang") if record.get("audio_lang") != "unknown" else None
            )
            if language is not None and not isinstance(language, str):
                raise ValueError(f"{where}: text_lang/audio_lang must be a language code string, got {language!r}")
            prompt = record.get("prompt") if isinstance(record.get("prompt"), str) else None
            records.append(Record(prediction, reference, language, prompt))
    if not records:
        raise ValueError(f"{path} holds no records; expected one JSON object per line")
    return records


def score_records(
    records: list[Record], task: Task, profile: str | None = None, language: str | None = None
) -> dict[str, MetricResult]:
    """Score records with the task's metric family; one result per language (or one in all)."""
    family = get_metric(task.metric)
    options = task.metric_options()
    profile = profile or task.profile
    groups: dict[str, list[Record]] = {}
    for r in records:
        lang = (r.language or language or "en") if family.by_language else (language or "en")
        groups.setdefault(lang, []).append(r)
    return {
        lang: family([r.prediction for r in rs], [r.reference for r in rs], profile=profile, language=lang, **options)
        for lang, rs in groups.items()
    }


def format_table(result: MetricResult, bootstrap: int = 0, seed: int = 0) -> str:
    """The result as a small text table, with 95% intervals and what was not computed."""
    cis = result.cis(bootstrap, seed) if bootstrap > 0 else {}
    lines = [f"  {'metric':<26}{'value':>14}   95% CI"]
    for name, value in result.values.items():
        unit = result.units.get(name, "")
        ci = cis.get(name)
        ci_text = f"[{format_value(ci[0], unit)}, {format_value(ci[1], unit)}]" if ci else ""
        mark = " *" if name == result.primary else ""
        lines.append(f"  {display_name(name) + mark:<26}{format_value(value, unit):>14}   {ci_text}".rstrip())
    for name, why in result.not_computed.items():
        lines.append(f"  {display_name(name)}: not computed ({why})")
    confusion = result.details.get("confusion")
    if confusion and len(confusion["columns"]) <= 16:
        lines.append("  confusion matrix (rows: reference, columns: prediction):")
        width = max(len(c) for c in confusion["columns"] + confusion["labels"]) + 2
        lines.append("  " + " " * width + "".join(f"{c:>{width}}" for c in confusion["columns"]))
        for label, row in zip(confusion["labels"], confusion["matrix"], strict=True):
            lines.append("  " + f"{label:>{width}}" + "".join(f"{v:>{width}}" for v in row))
    if "signature" in result.details:
        lines.append(f"  sacrebleu signature: {result.details['signature']}")
    for note in result.notes:
        lines.append(f"  note: {note}")
    lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in result.versions.items()))
    return "\n".join(lines)


def _generation(path: str | Path, prompts: list[str]) -> dict:
    """What can be said of how a file's predictions were made (``prompt`` fields are hashed)."""
    out: dict[str, Any] = {"decoding": f"not recorded: predictions read from {path}"}
    if prompts:
        unique = sorted(set(prompts))
        out.update(prompts=len(unique), prompt_sha256=hashlib.sha256("\n".join(unique).encode("utf-8")).hexdigest())
    else:
        out["prompt_sha256"] = "not recorded: no 'prompt' field in the file"
    return out


def main(namespace: argparse.Namespace) -> int:
    args = flags.from_args(ScoreConfig, namespace)
    task = get_task(args.task)
    family = get_metric(task.metric)  # a user's task file may name a family that does not exist
    records = read_records(args.file, family)
    results = score_records(records, task, args.profile, args.language)
    chosen = (
        "--profile"
        if args.profile
        else f"the {task.name} task's default"
        if task.profile
        else f"the {family.name} family's default"
    )
    generation = _generation(args.file, [r.prompt for r in records if r.prompt])
    if args.json:
        dicts = {lang: r.to_dict(bootstrap=args.bootstrap, seed=args.seed) for lang, r in results.items()}
        for d in dicts.values():
            d["provenance"].update(profile_from=chosen, generation=generation)
        head = {"file": str(args.file), "task": task.name}
        out = {**head, **next(iter(dicts.values()))} if len(dicts) == 1 else {**head, "by_language": dicts}
        print(json.dumps(out, ensure_ascii=False))
        return 0
    for result in results.values():
        language = f", language {result.language}" if result.language else ""
        print(
            f"{args.file}: task {task.name}, metric {result.family} (profile {result.profile}, {chosen}), "
            f"{result.n} example{'s' if result.n != 1 else ''}{language}  (* primary)"
        )
        if result.provenance.get("anchor"):
            print(f"  profile {result.profile} follows {result.provenance['anchor']}")
        print(format_table(result, args.bootstrap, args.seed))
    return 0
