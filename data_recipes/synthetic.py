"""The synthetic multitask corpus that ``qaudio synth --out DIR`` generates offline.

Layout: ``DIR/train.jsonl``, ``DIR/dev.jsonl`` and ``DIR/test.jsonl`` in qaudio's example
schema, audio paths relative to ``DIR``. One manifest holds every task; ``--task`` selects one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from qaudio.data import Example
from qaudio.recipe import Recipe

from .manifest import manifest_examples


class Synthetic(Recipe):
    name = "synthetic"
    tasks = ()  # every task the generator wrote; --task selects one
    splits = ("train", "dev", "test")
    homepage = "generated locally: qaudio synth --out DIR"
    layout = "DIR/{train,dev,test}.jsonl (qaudio's example schema) with the audio under DIR"

    def prepare(self, root: Path) -> None:
        """Generate the corpus (size small, seed 0) when its folder lacks it: training works out of the box."""
        if (root / "train.jsonl").is_file():
            return
        from qaudio.synth.corpus import generate

        print(
            f"qaudio train: the synthetic corpus is missing at {root}; generating it (size small, seed 0; "
            f"`qaudio synth` makes other sizes). Pass --recipes NAME:ROOT to train on another corpus.",
            flush=True,
        )
        generate(root, size="small", seed=0, progress=True)

    def check_root(self, root: Path) -> None:
        if not root.is_dir():
            raise FileNotFoundError(
                f"synthetic corpus folder {root} does not exist; create it with `qaudio synth --out {root}`"
            )

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        path = root / f"{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: {root} is not a complete synthetic corpus; (re)create it with `qaudio synth --out {root}`"
            )
        yield from manifest_examples(path, task)


RECIPE = Synthetic()
