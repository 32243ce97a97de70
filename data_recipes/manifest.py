"""Any JSONL manifest in qaudio's example schema (see :mod:`qaudio.data`).

``--root`` is the manifest file itself, or a folder holding ``<split>.jsonl``. Relative audio
paths are relative to the manifest's folder and come out absolute. ``--task`` keeps only the
examples of that task; without it, every example is kept, whatever its task.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from qaudio.data import Example, read_manifest
from qaudio.recipe import Recipe


def manifest_examples(path: Path, task: str | None) -> Iterator[Example]:
    """The examples of one JSONL file, those of ``task`` only when it is given."""
    for ex in read_manifest(path, absolute_audio=True):
        if task is None or ex.task == task:
            yield ex


class Manifest(Recipe):
    name = "manifest"
    tasks = ()  # whatever the manifest holds
    splits = ()  # any <split>.jsonl
    homepage = ""  # a local file: the schema is documented in qaudio/data.py
    layout = "ROOT = a .jsonl file, one example per line in qaudio's schema; or a folder with ROOT/<split>.jsonl"

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        if root.is_file():
            path = root  # the split is the file itself
        elif split is None:
            raise ValueError(f"{self.name}: {root} is a folder; name the split (--split) to read <split>.jsonl from it")
        else:
            path = self.require(root / f"{split}.jsonl", "manifest")
        yield from manifest_examples(path, task)


RECIPE = Manifest()
