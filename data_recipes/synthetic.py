"""The synthetic multitask corpus that ``qaudio synth --out DIR`` generates offline.

Layout: ``DIR/train.jsonl``, ``DIR/dev.jsonl`` and ``DIR/test.jsonl`` in qaudio's example
schema, audio paths relative to ``DIR``. One manifest holds every task; ``--task`` selects one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from qaudio.data import Example
from qaudio.recipe import Recipe

from .manifest import manifest_examples


class Synthetic(Recipe):
    name = "synthetic"
    tasks = ()  # every task the generator wrote; --task selects one
    splits = ("train", "dev", "test")
    homepage = "generated locally: qaudio synth --out DIR"
    layout = "DIR/{train,dev,test}.jsonl (qaudio's example schema) with the audio under DIR"

    def check_root(self, root: Path) -> None:
        if not root.is_dir():
            raise FileNotFoundError(f"synthetic corpus folder {root} does not exist; create it with `qaudio synth --out {root}`")

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        path = root / f"{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: {root} is not a complete synthetic corpus; (re)create it with `qaudio synth --out {root}`")
        yield from manifest_examples(path, task)


RECIPE = Synthetic()
