"""From ``--recipes`` and ``--tasks`` to the list of training (or dev) items.

A recipe spec is ``NAME[:ROOT][@TRAIN[/DEV]]``: NAME is a built-in recipe or a ``.py`` file,
ROOT the corpus folder (default ``$QAUDIO_DATA/NAME``, else ``data/NAME``), TRAIN and DEV the
split names (default ``--train-split`` and ``--dev-split``). Examples of tasks not asked for
are left out; examples that cannot train (empty target, a missing file, a clip longer than
the encoder window) are skipped and counted in the :class:`BadDataLog`, or chunked at word
boundaries when ``--long-audio chunk`` and the example has word times.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import resolve_data_root
from ..data import Example
from ..task import EmptyTargetError, Task
from .bad_data import BadDataLog, BadItem


@dataclass(frozen=True)
class RecipeSpec:
    name: str  # a recipe name or .py file
    root: Path
    train_split: str
    dev_split: str  # "none": no dev examples from this corpus

    def __str__(self) -> str:
        return f"{self.name}:{self.root}@{self.train_split}/{self.dev_split}"


def default_root(name: str) -> Path:
    stem = Path(name).stem if name.endswith(".py") else name
    return resolve_data_root() / stem


def parse_recipes(text: str, train_split: str = "train", dev_split: str = "dev") -> list[RecipeSpec]:
    """``synthetic,librispeech:/data/LS@train-clean-100/dev-clean`` -> recipe specs."""
    specs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        head, _, splits = part.partition("@")
        # A Windows drive letter is not a root separator; elsewhere the first ':' is.
        name, sep, root = head.partition(":")
        if not name:
            raise ValueError(f"--recipes item {part!r}: expected NAME[:ROOT][@TRAIN[/DEV]]")
        train, _, dev = splits.partition("/")
        specs.append(
            RecipeSpec(
                name,
                Path(root).expanduser() if sep and root else default_root(name),
                train or train_split,
                dev or dev_split,
            )
        )
    if not specs:
        raise ValueError("--recipes is empty; expected NAME[:ROOT][@TRAIN[/DEV]], comma-separated")
    return specs


def parse_tasks(text: str) -> list[str]:
    """Task names as listed (repeats kept: they oversample); ``all`` stays ``["all"]``."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError("--tasks is empty; expected comma-separated task names, or 'all'")
    if "all" in names and len(names) > 1:
        raise ValueError("--tasks 'all' cannot be combined with task names")
    return names


@dataclass
class Item:
    """One trainable example: the record, its task spec, and where it came from."""

    example: Example
    task: Task
    source: str  # "recipe split, example N": for bad-data messages

    @property
    def duration(self) -> float:
        return self.example.duration

    @property
    def segment(self) -> tuple[float, float] | None:
        seg = self.example.meta.get("segment")
        return (float(seg[0]), float(seg[1])) if seg else None


def chunk_by_words(ex: Example, max_seconds: float) -> list[Example]:
    """Split a transcription example with word times into pieces of at most ``max_seconds``.

    Each cut falls in the middle of the pause between two words, so no word is split; a
    piece's target is its words, and its word times are shifted to the piece's start. Returns
    [] when a single word is longer than the window.
    """
    words = [(str(w), float(s), float(e)) for w, s, e in ex.words or []]
    pieces: list[tuple[float, float, list[tuple[str, float, float]]]] = []  # (start, end, words)
    current: list[tuple[str, float, float]] = []
    start = 0.0
    for w, s, e in words:
        if current and e - start > max_seconds:
            cut = (current[-1][2] + s) / 2  # mid-pause between the last word kept and this one
            pieces.append((start, cut, current))
            current, start = [], cut
        if e - start > max_seconds:
            return []
        current.append((w, s, e))
    end = min(ex.duration, start + max_seconds)
    pieces.append((start, end, current))
    out = []
    for k, (a, b, ws) in enumerate(pieces):
        shifted = [[w, round(s - a, 3), round(e - a, 3)] for w, s, e in ws]
        out.append(
            replace(
                ex,
                id=f"{ex.id}#chunk{k}",
                duration=b - a,
                target=" ".join(w for w, _, _ in ws),
                words=shifted,
                meta={**ex.meta, "segment": [a, b]},
            )
        )
    return out


def _fit_window(item: Item, max_seconds: float, long_audio: str, bad: BadDataLog) -> list[Item]:
    """The item as is, its chunks, or nothing (counted) when it exceeds the encoder window."""
    ex = item.example
    if ex.duration <= max_seconds:
        return [item]
    detail = f"{ex.duration:.1f} s is longer than the encoder window of {max_seconds:g} s"
    if long_audio == "chunk":
        if ex.words and item.task.chunks_at_words:
            pieces = chunk_by_words(ex, max_seconds)
            if pieces:
                return [Item(p, item.task, item.source) for p in pieces]
            detail += " and a single word is longer than the window"
        else:
            detail += " and it cannot be chunked (only examples of a chunks_at_words task with word times can)"
    bad.record(BadItem("too long", ex.id, ex.audio, detail, item.source))
    return []


def _check_trainable(item: Item, style: str, bad: BadDataLog, check_file: bool = True) -> bool:
    """An item whose prompt and target can be built and whose audio file exists (``check_file``:
    streamed examples carry their audio bytes, not a file)."""
    ex = item.example
    try:
        item.task.prompt(ex.request(item.task), style)
        item.task.targets(ex)
    except ValueError as e:  # EmptyTargetError: nothing to learn; any other: the example is malformed
        reason = "empty target" if isinstance(e, EmptyTargetError) else "bad example"
        bad.record(BadItem(reason, ex.id, ex.audio, str(e), item.source))
        return False
    if check_file and not os.path.isfile(ex.audio):
        bad.record(BadItem("missing file", ex.id, ex.audio, "audio file not found", item.source))
        return False
    return True


def load_items(
    specs: list[RecipeSpec],
    split_kind: str,
    tasks: dict[str, Task],
    style: str,
    bad: BadDataLog,
    keep_all: bool = False,
) -> list[Item]:
    """The usable items of every recipe's ``split_kind`` ("train" or "dev") split.

    ``tasks``: the task specs by name (the caller resolves names); examples of other tasks are
    left out, unless ``keep_all`` (``--tasks all``): then ``tasks`` is every known task and an
    example naming another one is an error.
    """
    from ..recipe import RecipeWarning, load_examples

    items: list[Item] = []
    for spec in specs:
        split = spec.train_split if split_kind == "train" else spec.dev_split
        if split == "none":
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RecipeWarning)
            for n, ex in enumerate(load_examples(spec.name, spec.root, split), 1):
                if ex.task not in tasks:
                    if keep_all:
                        raise ValueError(
                            f"{spec.name} {split}, example {n}: unknown task {ex.task!r}; known tasks: "
                            f"{', '.join(sorted(tasks))} (or pass a task file by path in --tasks)"
                        )
                    continue
                item = Item(ex, tasks[ex.task], f"{spec.name} {split}, example {n}")
                if _check_trainable(item, style, bad):
                    items.append(item)
        for w in caught:
            print(f"qaudio train: warning: {w.message}")
    return items


def fit_to_window(items: list[Item], max_seconds: float, long_audio: str, bad: BadDataLog) -> list[Item]:
    """Every item within the encoder window: kept, chunked (``long_audio="chunk"``) or skipped."""
    return [piece for item in items for piece in _fit_window(item, max_seconds, long_audio, bad)]


def check_tasks_present(items: list[Item], tasks: list[str], where: str) -> list[str]:
    """The task names to train, in listed order with repeats; a listed task without items raises."""
    found = Counter(i.example.task for i in items)
    if tasks == ["all"]:
        if not found:
            raise ValueError(f"{where}: no usable training examples")
        return sorted(found)
    missing = [t for t in dict.fromkeys(tasks) if not found.get(t)]
    if missing:
        have = ", ".join(f"{t} ({n})" for t, n in sorted(found.items())) or "none"
        raise ValueError(f"{where}: no usable training examples for task(s) {', '.join(missing)}; tasks found: {have}")
    return tasks


def tokenizer_texts(items: list[Item], style: str) -> list[str]:
    """The texts a from-scratch tokenizer is trained on: every prompt and every reference."""
    texts = []
    for item in items:
        texts.append(item.task.prompt(item.example.request(item.task), style))
        texts.extend(item.task.targets(item.example))
    return texts
