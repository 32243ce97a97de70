"""Clotho v2.1 (Drossos et al., ICASSP 2020): audio captioning, five captions per clip.

Layout of the Zenodo record: ``clotho_captions_<split>.csv`` (columns ``file_name``,
``caption_1`` ... ``caption_5``) and ``clotho_audio_<split>.7z``, whose archive holds a folder
named after the split (``development/*.wav``). Where users put them varies, so all of these
are found::

    ROOT/clotho_captions_<split>.csv   or  ROOT/clotho_csv_files/clotho_captions_<split>.csv
    ROOT/<split>/*.wav   or  ROOT/clotho_audio_files/<split>/*.wav   or  ROOT/clotho_audio_<split>/*.wav

File names are Freesound titles with spaces and punctuation; the CSV quotes them where needed.
Audio is 44.1 kHz mono, 15-30 s; the target is the list of five captions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from qaudio.data import Example
from qaudio.recipe import Recipe, Skipped, read_table

CAPTION_COLUMNS = tuple(f"caption_{i}" for i in range(1, 6))


class Clotho(Recipe):
    name = "clotho"
    tasks = ("aac",)
    splits = ("development", "validation", "evaluation")
    homepage = "https://zenodo.org/records/4783391"
    layout = (
        "ROOT/clotho_captions_<split>.csv (file_name, caption_1..caption_5; or in ROOT/clotho_csv_files/)\n"
        "ROOT/<split>/*.wav, extracted from clotho_audio_<split>.7z\n"
        "(or ROOT/clotho_audio_files/<split>/, or ROOT/clotho_audio_<split>/)"
    )

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        task = self.task_or_default(task)
        csv_name = f"clotho_captions_{split}.csv"
        captions_csv = self.find(root, csv_name, f"clotho_csv_files/{csv_name}", what="captions file")
        audio_dir = self.find(root, split, f"clotho_audio_files/{split}", f"clotho_audio_{split}", what="audio folder")
        skipped = Skipped(self, split)
        for row in read_table(captions_csv, columns=("file_name", *CAPTION_COLUMNS)):
            wav = audio_dir / row["file_name"]
            duration = skipped.duration(wav)
            if duration is None:
                continue
            yield Example(
                id=self.example_id(split, row["file_name"]),
                audio=str(wav),
                duration=duration,
                task=task,
                audio_lang="unknown",
                text_lang="en",
                target=[row[c].strip() for c in CAPTION_COLUMNS],
                meta={"corpus": self.name, "split": split},
            )
        skipped.warn()


RECIPE = Clotho()
