"""CochlScene (Jeong and Park, APSIPA 2022): acoustic scenes recorded by crowd workers.

Layout, as ``CochlScene.zip`` from Zenodo unpacks: one folder per split, one sub-folder per
class, holding 10 s, 44.1 kHz wav files::

    CochlScene/{Train,Val,Test}/<Class>/*.wav

The 13 class folders (Bus, Cafe, Car, CrowdedIndoor, ...) lower-cased are the asc task's
labels; a folder outside that set is an error, so a wrong root is caught early.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from qaudio.data import Example
from qaudio.recipe import Recipe, Skipped
from qaudio.specs import get_task

SPLIT_FOLDERS = {"train": "Train", "val": "Val", "test": "Test"}


class CochlScene(Recipe):
    name = "cochlscene"
    tasks = ("asc",)
    splits = ("train", "val", "test")
    homepage = "https://zenodo.org/records/7080122"
    layout = (
        "ROOT/CochlScene/{Train,Val,Test}/<Class>/*.wav, one folder per scene class\n"
        "(ROOT may also be the CochlScene folder itself.)"
    )

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        task = self.task_or_default(task)
        folder = SPLIT_FOLDERS[split]
        split_dir = self.find(
            root, f"CochlScene/{folder}", folder, f"CochlScene/{split}", split, what=f"{folder} folder"
        )
        labels = get_task("asc").labels
        class_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir())
        unknown = [d.name for d in class_dirs if d.name.lower() not in labels]
        if unknown or not class_dirs:
            raise self.layout_error(
                f"{split_dir} has class folders {unknown or '(none)'}; expected the 13 classes {', '.join(labels)} (any case)"
            )
        skipped = Skipped(self, split)
        for class_dir in class_dirs:
            for wav in sorted(class_dir.glob("*.wav")):
                duration = skipped.duration(wav)
                if duration is None:
                    continue
                yield Example(
                    id=self.example_id(split, f"{class_dir.name}/{wav.stem}"),
                    audio=str(wav),
                    duration=duration,
                    task=task,
                    audio_lang="unknown",
                    text_lang="en",
                    label=class_dir.name.lower(),
                    meta={"corpus": self.name, "split": split},
                )
        skipped.warn()


RECIPE = CochlScene()
