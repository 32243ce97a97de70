"""VocalSound (Gong et al., ICASSP 2022): laughter, sighs, coughs, throat clearing, sneezes, sniffs.

Layout, as ``vs_release_16k.zip`` unpacks (``vs_release_44k.zip`` has ``audio_44k/``)::

    audio_16k/<speaker>_<n>_<label>.wav      e.g. f0003_0_cough.wav, m0105_1_throatclearing.wav
    meta/tr_meta.csv, meta/val_meta.csv, meta/te_meta.csv

The label is the last ``_`` field of the file name, the speaker the first. The split is by
speaker: the first column of each ``meta/*_meta.csv`` lists the speakers of train, val and
test (the files may or may not have a header row; both are read). Split ``all`` yields every
file, for corpora copies without ``meta/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from qaudio.data import Example
from qaudio.recipe import Recipe, Skipped
from qaudio.specs import get_task

META_FILES = {"train": "tr_meta.csv", "val": "val_meta.csv", "test": "te_meta.csv"}
_SPEAKER = re.compile(r"^[fm]\d+$")


def split_speakers(meta_file: Path) -> set[str]:
    """The speaker ids in the first column of a VocalSound meta CSV (a header row is ignored)."""
    speakers = set()
    for line in meta_file.read_text(encoding="utf-8-sig").splitlines():
        first = line.split(",")[0].strip()
        if _SPEAKER.match(first):
            speakers.add(first)
    return speakers


class VocalSound(Recipe):
    name = "vocalsound"
    tasks = ("vsc",)
    splits = ("train", "val", "test", "all")
    homepage = "https://github.com/YuanGongND/vocalsound"
    layout = (
        "ROOT/audio_16k/<speaker>_<n>_<label>.wav (or ROOT/audio_44k/)\n"
        "ROOT/meta/{tr,val,te}_meta.csv, first column the speaker ids of each split"
    )

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        task = self.task_or_default(task)
        audio_dir = self.find(root, "audio_16k", "audio_44k", what="audio folder")
        speakers = (
            None if split == "all" else split_speakers(self.require(root / "meta" / META_FILES[split], "speaker list"))
        )
        labels = get_task("vsc").labels
        skipped = Skipped(self, split)
        for wav in sorted(audio_dir.glob("*.wav")):
            parts = wav.stem.split("_")
            speaker, label = parts[0], parts[-1].lower()
            if len(parts) < 2 or label not in labels:
                raise ValueError(
                    f"{self.name}: cannot read a label from {wav.name}; expected <speaker>_<n>_<label>.wav with a label in {', '.join(labels)}"
                )
            if speakers is not None and speaker not in speakers:
                continue  # another split's speaker
            duration = skipped.duration(wav)
            if duration is None:
                continue
            yield Example(
                id=self.example_id(split, wav.stem),
                audio=str(wav),
                duration=duration,
                task=task,
                # Qwen-Audio tags VocalSound with <|en|> (human vocal sounds), not <|unknown|>.
                audio_lang="en",
                text_lang="en",
                label=label,
                meta={"corpus": self.name, "split": split, "speaker": speaker},
            )
        skipped.warn()


RECIPE = VocalSound()
