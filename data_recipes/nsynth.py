"""NSynth (Engel et al., ICML 2017): four-second notes of 1,006 instruments.

Layout, as ``nsynth-<split>.jsonwav.tar.gz`` unpacks::

    nsynth-{train,valid,test}/examples.json
    nsynth-{train,valid,test}/audio/<note_str>.wav      e.g. bass_synthetic_033-022-050.wav

``examples.json`` maps each ``note_str`` to its annotations (``instrument_family_str``,
``pitch``, ``velocity``, ``qualities_str``, ...). The mna target is written by the task's own
``note_target(instrument_family_str, pitch)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from qaudio.data import Example
from qaudio.recipe import Recipe, Skipped, builtin_task_module


class NSynth(Recipe):
    name = "nsynth"
    tasks = ("mna",)
    splits = ("train", "valid", "test")
    homepage = "https://magenta.tensorflow.org/datasets/nsynth"
    layout = "ROOT/nsynth-<split>/examples.json and ROOT/nsynth-<split>/audio/<note_str>.wav"

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        task = self.task_or_default(task)
        mna = builtin_task_module("mna")
        split_dir = self.find(root, f"nsynth-{split}", what=f"split folder nsynth-{split}")
        notes = json.loads(self.require(split_dir / "examples.json", "annotation file").read_text(encoding="utf-8"))
        skipped = Skipped(self, split)
        for note_str, note in sorted(notes.items()):
            family = note["instrument_family_str"]
            if family not in mna.INSTRUMENT_FAMILIES:
                raise ValueError(
                    f"{self.name}: {note_str} has instrument family {family!r}; expected one of {', '.join(mna.INSTRUMENT_FAMILIES)}"
                )
            duration = skipped.duration(split_dir / "audio" / f"{note_str}.wav")
            if duration is None:
                continue
            yield Example(
                id=self.example_id(split, note_str),
                audio=str(split_dir / "audio" / f"{note_str}.wav"),
                duration=duration,
                task=task,
                audio_lang="unknown",
                text_lang="en",
                target=mna.note_target(family, note["pitch"]),
                meta={
                    "corpus": self.name,
                    "split": split,
                    "instrument": note.get("instrument_str", ""),
                    "velocity": note.get("velocity"),
                    "qualities": note.get("qualities_str", []),
                },
            )
        skipped.warn()


RECIPE = NSynth()
