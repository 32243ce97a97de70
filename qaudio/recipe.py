"""Corpus recipes: the base class, the readers recipes share, and the ``qaudio data`` command.

A recipe reads one corpus in its official distribution layout from a local folder (the user
downloads it) and yields :class:`qaudio.data.Example` records. Recipes yield audio *paths*
with durations read from file headers; decoding, resampling to 16 kHz and down-mixing happen
once, at load time, in :func:`qaudio.audio.load_audio`.

Built-in recipes live in the top-level ``data_recipes/`` folder, one file per corpus,
registered in ``data_recipes/__init__.py`` ``RECIPES``. A user's corpus is one ``.py`` file
with a ``RECIPE`` object, passed by path wherever a recipe name is accepted::

    from qaudio.data import Example
    from qaudio.recipe import Recipe, audio_duration, read_table

    class MyCorpus(Recipe):
        name = "my_corpus"
        tasks = ("asr",)
        splits = ("train", "test")
        homepage = "https://example.org/my-corpus"
        layout = "ROOT/<split>.tsv (columns: file, text) and ROOT/wav/<file>"

        def examples(self, root, split, task=None):
            for row in read_table(self.require(root / f"{split}.tsv"), delimiter="\\t", columns=("file", "text")):
                wav = root / "wav" / row["file"]
                yield Example(id=self.example_id(split, row["file"]), audio=str(wav),
                              duration=audio_duration(wav), task=self.task_or_default(task), target=row["text"])

    RECIPE = MyCorpus()

Recipe options (``qaudio data RECIPE --option key=value``) are the dataclass fields of the
recipe class, declared under ``@dataclass(frozen=True)`` with a default and a one-line comment
each (shown by ``--info``); ``Recipe.with_options`` returns a configured copy.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import itertools
import os
import sys
import types
import typing
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .audio import AudioError, audio_duration
from .data import Example, write_manifest
from .tags import LANGUAGES

__all__ = [
    "AUDIO_EXTENSIONS",
    "Recipe",
    "RecipeWarning",
    "Skipped",
    "audio_duration",
    "audio_index",
    "builtin_task_module",
    "load_examples",
    "read_table",
    "recipe_table",
    "tag_language",
]

# The names corpora give their dev split, in order of preference: `qaudio data --shards` writes
# the first a recipe has (LibriSpeech: dev-clean; Clotho: validation, its "development" is training).
DEV_SPLIT_NAMES = ("dev", "dev-clean", "validation", "val", "valid")

# What libsndfile (or librosa's fallback) in qaudio.audio reads; used to index audio folders.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


class RecipeWarning(UserWarning):
    """Rows a recipe left out (missing audio, unaligned utterances); the corpus still loads."""


@dataclass(frozen=True)
class Recipe:
    """One corpus: how its files become examples. Subclasses set the class attributes below
    and write :meth:`examples`; their dataclass fields, if any, are the recipe's options."""

    name: ClassVar[str] = ""  # the name on the command line and in RECIPES
    tasks: ClassVar[tuple[str, ...]] = ()  # tasks it can produce, the default first; () = any
    splits: ClassVar[tuple[str, ...]] = ()  # official split names, the default first; () = any
    homepage: ClassVar[str] = ""  # where the corpus is published (shown in errors)
    layout: ClassVar[str] = ""  # the expected folder layout (shown in errors)

    def examples(self, root: Path, split: str | None, task: str | None = None) -> Iterator[Example]:
        """Yield the examples of one split; ``task`` None means the recipe's default task.

        ``split`` is None only for recipes without fixed ``splits`` when the user named none.
        """
        raise NotImplementedError(f"recipe {self.name!r} does not define examples()")

    def audio_records(self, root: Path, split: str | None, task: str | None = None) -> Iterator:
        """The examples with their audio, for ``qaudio data --shards``: :class:`qaudio.shards.AudioRecord`
        objects. The default leaves the bytes to the shard writer (it decodes ``example.audio``);
        a recipe whose rows embed encoded audio (``hf``) yields those bytes as they are."""
        from .shards import AudioRecord

        for ex in self.examples(root, split, task):
            yield AudioRecord(ex)

    def prepare(self, root: Path) -> None:
        """Called by training (on the main process) before the corpus is read: a recipe that can
        make its corpus locally does so here when ``root`` lacks it. The default does nothing."""

    # ---- Helpers for recipe authors --------------------------------------------------------

    def check_root(self, root: Path) -> None:
        """Called once before :meth:`examples`; the default wants an existing file or folder."""
        if not root.exists():
            raise self.layout_error(f"{root} does not exist")

    def task_or_default(self, task: str | None) -> str:
        """The requested task, or the recipe's default (its first task)."""
        if task is None:
            if not self.tasks:
                raise ValueError(f"recipe {self.name!r} needs a task (--task)")
            return self.tasks[0]
        if self.tasks and task not in self.tasks:
            raise ValueError(f"recipe {self.name!r} cannot produce task {task!r}; it produces: {', '.join(self.tasks)}")
        return task

    def layout_error(self, problem: str) -> FileNotFoundError:
        """An error that says what was wrong, the layout expected and where to get the corpus."""
        lines = [f"{self.name}: {problem}."]
        if self.layout:
            lines.append("Expected layout:\n  " + self.layout.strip().replace("\n", "\n  "))
        if self.homepage:
            lines.append(f"The corpus is published at {self.homepage}")
        return FileNotFoundError("\n".join(lines))

    def require(self, path: Path, what: str = "") -> Path:
        """``path`` if it exists, else a layout error naming it."""
        if not path.exists():
            raise self.layout_error(f"{what or 'expected'} {path} does not exist")
        return path

    def find(self, root: Path, *candidates: str, what: str = "folder") -> Path:
        """The first of ``root / candidate`` that exists (official layouts come in variants)."""
        for candidate in candidates:
            path = root / candidate
            if path.exists():
                return path
        tried = ", ".join(str(root / c) for c in candidates)
        raise self.layout_error(f"no {what} found under {root} (looked for {tried})")

    def example_id(self, split: str, key: str) -> str:
        """Ids are unique across corpora and splits, so mixed manifests never collide."""
        return f"{self.name}/{split}/{key}"

    # ---- Options -------------------------------------------------------------------------

    def options(self) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(self)}

    def with_options(self, options: dict[str, str] | None) -> Recipe:
        """A copy with options set from strings (``--option key=value``), converted by type."""
        if not options:
            return self
        known = self.options()
        if not known:
            raise ValueError(f"recipe {self.name!r} takes no options (got {', '.join(options)})")
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"recipe {self.name!r} has no option {', '.join(unknown)}; its options: {', '.join(known)}"
            )
        hints = typing.get_type_hints(type(self))
        return dataclasses.replace(self, **{k: _convert(v, hints[k], k) for k, v in options.items()})


def _convert(text: str, hint: Any, key: str) -> Any:
    """Convert an option string to the field's type (str, int, float, bool, or X | None)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        if text.lower() in ("", "none", "null"):
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"option {key}={text!r}: expected true or false")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise ValueError(f"option {key}={text!r}: expected {hint.__name__}") from None
    return text


# ---- Shared readers --------------------------------------------------------------------------


def read_table(
    path: Path,
    delimiter: str = ",",
    columns: Iterable[str] = (),
    quoting: bool = True,
    escapechar: str | None = None,
    encoding: str = "utf-8-sig",
) -> Iterator[dict[str, str]]:
    """Rows of a CSV/TSV file with a header, as dicts; missing ``columns`` raise naming the file.

    ``quoting=False`` reads quote characters as text (Common Voice and CoVoST write sentences
    with bare ``"``); ``escapechar`` undoes pandas' ``escapechar`` (CoVoST writes ``\\``).
    ``utf-8-sig`` drops a byte-order mark, which some Windows-edited copies carry.
    """
    with open(path, newline="", encoding=encoding) as f:
        reader = csv.DictReader(
            f, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE, escapechar=escapechar
        )
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; found: {', '.join(header) or '(empty file)'}"
            )
        for row in reader:
            yield {k: (v if v is not None else "") for k, v in row.items() if k is not None}


def audio_index(folder: Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> dict[str, Path]:
    """Audio files directly in ``folder``, by file stem (one directory listing, not a stat per row)."""
    exts = {e.lower() for e in extensions}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in exts and p.is_file()}


def tag_language(code: str, corpus: str) -> str:
    """``code`` if it has a language tag in Qwen-Audio's vocabulary, else an error naming the set."""
    if code in LANGUAGES:
        return code
    supported = ", ".join(f"{k} ({v})" for k, v in LANGUAGES.items())
    raise ValueError(f"{corpus}: language {code!r} has no tag in the tag set; supported languages: {supported}")


def builtin_task_module(name: str) -> types.ModuleType:
    """The module of a built-in task spec, for its helpers (``tasks/mna.py`` ``note_target``)."""
    from .specs import registry

    registry("tasks")  # loads the spec package as qaudio._builtin.tasks (source tree or wheel)
    return importlib.import_module(f"qaudio._builtin.tasks.{name}")


class Skipped:
    """Rows a recipe leaves out, counted by reason and reported once as a :class:`RecipeWarning`.

    Real corpora have holes (AudioCaps clips deleted from YouTube, a MELD video missing,
    AISHELL-1 wavs without a transcript); one warning per reason beats one per row.
    """

    def __init__(self, recipe: Recipe, split: str):
        self.where = f"{recipe.name} {split}"
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def add(self, reason: str, item: object) -> None:
        self.counts[reason] += 1
        self.first.setdefault(reason, str(item))

    def duration(self, path: Path, missing: str = "audio file missing", seconds: float | None = None) -> float | None:
        """The seconds of an audio file, or None after recording why it cannot be used.

        ``seconds``: a duration the corpus itself lists (Common Voice's clip_durations.tsv),
        trusted over reading the header. Missing, undecodable and empty files are skipped
        rather than stopping a whole corpus on one bad clip.
        """
        if not path.is_file():
            self.add(missing, path)
            return None
        if seconds is not None and seconds > 0:
            return seconds
        try:
            seconds = audio_duration(path)
        except AudioError as e:
            self.add("audio file cannot be decoded", e)
            return None
        if seconds <= 0:
            self.add("audio file is empty", path)
            return None
        return seconds

    def warn(self) -> None:
        for reason, n in self.counts.items():
            warnings.warn(
                f"{self.where}: skipped {n} row(s): {reason} (first: {self.first[reason]})", RecipeWarning, stacklevel=2
            )


# ---- Loading ---------------------------------------------------------------------------------


def _resolve(recipe: str | Recipe) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    from .specs import get_recipe

    found = get_recipe(recipe)
    if not isinstance(found, Recipe):
        raise ValueError(f"{recipe}: RECIPE must be an instance of qaudio.recipe.Recipe, got {type(found).__name__}")
    return found


def load_examples(
    recipe: str | Recipe,
    root: str | Path,
    split: str | None = None,
    task: str | None = None,
    limit: int | None = None,
    options: dict[str, str] | None = None,
    with_audio: bool = False,
) -> Iterator[Example]:
    """The examples of a recipe (a name, a ``.py`` path or a :class:`Recipe`) for one split.

    ``with_audio``: yield :class:`qaudio.shards.AudioRecord` objects (:meth:`Recipe.audio_records`)
    instead, for writing shards.

    This is the one entry point training, evaluation and ``qaudio data`` use: it checks the
    split and task names, makes the root absolute (so audio paths are), and raises when a
    split yields nothing. ``split`` None means the recipe's first split (recipes without
    fixed splits receive None and decide, e.g. a manifest given as a file needs none).
    """
    recipe = _resolve(recipe).with_options(options)
    if split is None and recipe.splits:
        split = recipe.splits[0]
    elif split is not None and recipe.splits and split not in recipe.splits:
        raise ValueError(f"recipe {recipe.name!r} has no split {split!r}; its splits: {', '.join(recipe.splits)}")
    if task is not None:
        recipe.task_or_default(task)  # validates the name before any file is read
    root = Path(root).expanduser()
    if root.exists():
        root = root.absolute()
    recipe.check_root(root)
    return _checked(recipe, root, split, task, limit, with_audio)


def _checked(
    recipe: Recipe, root: Path, split: str | None, task: str | None, limit: int | None, with_audio: bool = False
) -> Iterator[Example]:
    n = 0
    produce = recipe.audio_records if with_audio else recipe.examples
    for out in itertools.islice(produce(root, split, task), limit):
        ex = out.example if with_audio else out
        if task is not None and ex.task != task:
            raise ValueError(f"recipe {recipe.name!r} yielded an example of task {ex.task!r} when asked for {task!r}")
        n += 1
        yield out
    if n == 0 and limit != 0:
        what = f"split {split!r} under {root}" if split else str(root)
        raise recipe.layout_error(f"{what} yielded no examples" + (f" of task {task!r}" if task else ""))


def recipe_table(recipes: dict[str, Recipe]) -> str:
    """A Markdown table of recipes, their tasks and splits (``qaudio data --list``)."""
    rows = ["| recipe | tasks | splits | published at |", "|---|---|---|---|"]
    for name, r in recipes.items():
        rows.append(
            f"| {name} | {', '.join(r.tasks) or 'any'} | {', '.join(r.splits) or 'any'} | {r.homepage or '-'} |"
        )
    return "\n".join(rows)


def describe(recipe: Recipe) -> str:
    """Everything a user needs to point a recipe at a corpus (``qaudio data RECIPE --info``)."""
    lines = [
        f"recipe:   {recipe.name}",
        f"tasks:    {', '.join(recipe.tasks) or 'any (--task)'}"
        + (f"  (default {recipe.tasks[0]})" if recipe.tasks else ""),
        f"splits:   {', '.join(recipe.splits) or 'any (--split)'}",
        f"homepage: {recipe.homepage}",
        "layout:\n  " + recipe.layout.strip().replace("\n", "\n  "),
    ]
    opts = recipe.options()
    if opts:
        lines.append("options (--option key=value):")
        helps = _option_comments(type(recipe))
        for name in opts:
            lines.append(f"  {name} = {getattr(recipe, name)!r}" + (f"  # {helps[name]}" if name in helps else ""))
    return "\n".join(lines)


def _option_comments(cls: type) -> dict[str, str]:
    """The one-line comment after each option field in the recipe's source, used as its help."""
    import inspect
    import re

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    found = re.findall(r"^\s+(\w+)\s*:[^=\n]+=[^#\n]*#\s*(.+)$", source, flags=re.MULTILINE)
    return {name: text.strip() for name, text in found}


# ---- The `qaudio data` command ---------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", help="recipe name (see --list) or the path of a .py file defining RECIPE")
    parser.add_argument(
        "--root", help="the corpus folder, in its official layout (hf: a dataset folder, parquet path or hub id)"
    )
    parser.add_argument("--split", default=None, help="split name (default: the recipe's first split)")
    parser.add_argument(
        "--task", default=None, help="task to produce, for corpora with several (default: the recipe's first)"
    )
    parser.add_argument("--limit", type=int, default=None, help="stop after this many examples")
    parser.add_argument("--out", default=None, help="JSONL file to write (default: standard output)")
    parser.add_argument(
        "--shards",
        default=None,
        metavar="OUT",
        help="write WebDataset tar shards (audio bytes + record) and OUT/index.json instead of a manifest",
    )
    parser.add_argument("--shard-size", default="1GB", help="with --shards: bytes per shard (500MB, 1GB, 2GiB)")
    parser.add_argument("--audio-format", default="flac", help="with --shards: how decoded audio is stored (flac, wav)")
    parser.add_argument(
        "--dev-split",
        default="auto",
        help="with --shards: also write this split as OUT/dev-*.tar, the streamed run's dev loss; auto: the "
        f"recipe's split named {'/'.join(DEV_SPLIT_NAMES)} if it has one; none: no dev split",
    )
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="a recipe option; repeatable"
    )
    parser.add_argument("--list", action="store_true", help="list the built-in recipes with their tasks and splits")
    parser.add_argument("--info", action="store_true", help="show the recipe's layout, splits, tasks and options")


def _parse_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option {pair!r}: expected KEY=VALUE")
        options[key.strip()] = value
    return options


def main(args: argparse.Namespace) -> int:
    from .specs import registry

    if args.list:
        print(recipe_table(registry("data_recipes")))
        return 0
    if not args.recipe:
        raise ValueError(f"name a recipe ({', '.join(registry('data_recipes'))}) or a .py file; --list shows them")
    options = _parse_options(args.option)
    if args.info:
        print(describe(_resolve(args.recipe).with_options(options)))
        return 0
    if not args.root:
        raise ValueError("--root is required: the folder that holds the corpus (see --info for the layout)")
    if args.shards:
        return _write_shards(args, options)
    examples = load_examples(args.recipe, args.root, args.split, args.task, args.limit, options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecipeWarning)
        if args.out is None:
            n = write_manifest(examples, None)
        else:
            # Written beside the target and renamed at the end, so an error half-way through
            # (a malformed row, a missing folder) never leaves a truncated manifest behind.
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_name(out.name + ".partial")
            try:
                n = write_manifest(examples, partial)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            os.replace(partial, out)
    for w in caught:
        print(f"qaudio data: warning: {w.message}", file=sys.stderr)
    print(f"qaudio data: wrote {n} examples" + (f" to {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def _write_shards(args: argparse.Namespace, options: dict[str, str]) -> int:
    """``qaudio data RECIPE --root ROOT --shards OUT``: the split as a shard set (qaudio.shards)."""
    from .shards import parse_size, write_shards

    if args.out:
        raise ValueError("--out writes a manifest and --shards a shard set: give one of them")
    size = parse_size(args.shard_size)
    from .shards import AudioRecord

    recipe = _resolve(args.recipe).with_options(options)
    split = args.split or (recipe.splits[0] if recipe.splits else None)
    dev_split = shard_dev_split(recipe, split, args.dev_split)

    def records(which: str | None) -> Iterator[AudioRecord]:
        # with_audio=True: the records carry their audio bytes (Recipe.audio_records)
        return typing.cast(
            Iterator[AudioRecord],
            load_examples(recipe, args.root, which, args.task, args.limit, with_audio=True),
        )

    def source(which: str | None) -> str:
        return f"{args.recipe} {which or ''} ({args.root})".replace("  ", " ")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecipeWarning)
        index = write_shards(
            records(split),
            args.shards,
            size,
            args.audio_format,
            source(split),
            dev=records(dev_split) if dev_split else None,
            dev_source=source(dev_split),
        )
    for w in caught:
        print(f"qaudio data: warning: {w.message}", file=sys.stderr)
    print(
        f"qaudio data: wrote {index.examples} examples ({index.seconds / 3600:.2f} h, {index.bytes / 1e6:.1f} MB) "
        f"in {len(index.shards)} shard(s) to {args.shards}",
        file=sys.stderr,
    )
    if index.dev is not None:
        print(
            f"qaudio data: and the dev split {dev_split}: {index.dev.examples} examples in "
            f"{len(index.dev.shards)} shard(s) (dev-*.tar), for the streamed run's dev loss",
            file=sys.stderr,
        )
    else:
        print(
            "qaudio data: no dev split written (a streamed run from this set logs no dev loss); "
            "--dev-split NAME writes one",
            file=sys.stderr,
        )
    return 0


def shard_dev_split(recipe: Recipe, split: str | None, asked: str) -> str | None:
    """The split ``qaudio data --shards`` writes as the set's dev split, per ``--dev-split``
    (auto | none | a name); None when there is none to write."""
    if asked == "none":
        return None
    if asked != "auto":
        if asked == split:
            raise ValueError(f"--dev-split {asked!r} is the split being written (--split); name another, or none")
        return asked
    # auto: a split of the recipe's own list; recipes without fixed splits (hf, manifest) name theirs
    return next((name for name in DEV_SPLIT_NAMES if name in recipe.splits and name != split), None)
