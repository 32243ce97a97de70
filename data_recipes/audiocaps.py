"""AudioCaps (Kim et al., NAACL 2019): captions for 10 s AudioSet clips.

The release is three CSV files (https://github.com/cdjkim/audiocaps, ``dataset/``):
``train.csv``, ``val.csv``, ``test.csv`` with columns ``audiocap_id, youtube_id, start_time,
caption``: one row per caption, so a clip has one row in train and five in val and test. Rows
are grouped by (youtube_id, start_time) into one example whose target lists its captions.

The audio is not distributed: users fetch the YouTube segments themselves, and tools name the
files differently. A clip's file is found in the audio folder under the first of these stems
that exists (any audio extension): ``<youtube_id>_<start_time>``, ``Y<youtube_id>``,
``<youtube_id>``, or any of the clip's ``<audiocap_id>``. Clips whose video is gone from
YouTube (several percent) are skipped with one warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from qaudio.data import Example
from qaudio.recipe import Recipe, Skipped, audio_index, read_table


def group_captions(rows) -> dict[tuple[str, str], list[dict]]:
    """Caption rows grouped by clip (youtube_id, start_time), in first-seen order."""
    clips: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        clips.setdefault((row["youtube_id"], row["start_time"]), []).append(row)
    return clips


def clip_stems(youtube_id: str, start_time: str, audiocap_ids: list[str]) -> list[str]:
    """File stems a downloaded clip may have, the most specific first."""
    return [f"{youtube_id}_{start_time}", f"Y{youtube_id}", youtube_id, *audiocap_ids]


class AudioCaps(Recipe):
    name = "audiocaps"
    tasks = ("aac",)
    splits = ("train", "val", "test")
    homepage = "https://audiocaps.github.io"
    layout = (
        "ROOT/<split>.csv or ROOT/dataset/<split>.csv (audiocap_id, youtube_id, start_time, caption)\n"
        "ROOT/audio/<split>/, ROOT/<split>/ or ROOT/audio/: the downloaded clips, named\n"
        "<youtube_id>_<start_time>, Y<youtube_id>, <youtube_id> or <audiocap_id> (.wav/.flac/.mp3/...)"
    )

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        task = self.task_or_default(task)
        captions_csv = self.find(root, f"{split}.csv", f"dataset/{split}.csv", what="captions file")
        audio_dir = self.find(root, f"audio/{split}", split, "audio", what="audio folder")
        files = audio_index(audio_dir)
        clips = group_captions(read_table(captions_csv, columns=("audiocap_id", "youtube_id", "start_time", "caption")))
        skipped = Skipped(self, split)
        for (youtube_id, start_time), rows in clips.items():
            ids = [r["audiocap_id"] for r in rows]
            audio = next((files[s] for s in clip_stems(youtube_id, start_time, ids) if s in files), None)
            if audio is None:
                skipped.add(
                    "no audio file for the clip (not downloaded, or gone from YouTube)",
                    f"{youtube_id} at {start_time}s",
                )
                continue
            duration = skipped.duration(audio)
            if duration is None:
                continue
            yield Example(
                id=self.example_id(split, f"{youtube_id}_{start_time}"),
                audio=str(audio),
                duration=duration,
                task=task,
                audio_lang="unknown",
                text_lang="en",
                target=[r["caption"].strip() for r in rows],
                # AudioCaps captions are shorter than Clotho's: Qwen-Audio gives them their own instruction.
                meta={
                    "corpus": self.name,
                    "split": split,
                    "instruction": "caption_audiocaps",
                    "youtube_id": youtube_id,
                    "start_time": float(start_time),
                    "audiocap_ids": ids,
                },
            )
        skipped.warn()


RECIPE = AudioCaps()
