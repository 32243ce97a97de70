"""AISHELL-1 (Bu et al., O-COCOSDA 2017; OpenSLR 33): read Mandarin speech.

Layout, as ``data_aishell.tgz`` unpacks once the per-speaker archives inside
``data_aishell/wav/`` (``S0002.tar.gz`` ...) are unpacked in place::

    data_aishell/transcript/aishell_transcript_v0.8.txt
    data_aishell/wav/{train,dev,test}/<speaker>/BAC009<speaker>W<n>.wav

Transcript lines are ``BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购``: the text is
word-segmented with spaces, which are not part of written Chinese, so the target joins the
words without them (as the Kaldi/ESPnet recipes do for character error rate). About 10% of
the wav files have no transcript line; they are skipped, as in those recipes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from qaudio.data import Example
from qaudio.recipe import Recipe, Skipped

TRANSCRIPT = "transcript/aishell_transcript_v0.8.txt"


def read_transcript(path: Path) -> dict[str, str]:
    """Utterance id -> transcript with the word-segmentation spaces removed."""
    transcripts = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        utt, *words = line.split()
        if words:
            transcripts[utt] = "".join(words)
    return transcripts


class Aishell1(Recipe):
    name = "aishell1"
    tasks = ("asr",)
    splits = ("train", "dev", "test")
    homepage = "https://www.openslr.org/33"
    layout = (
        f"ROOT/data_aishell/{TRANSCRIPT}\n"
        "ROOT/data_aishell/wav/<split>/<speaker>/<utt>.wav  (unpack wav/*.tar.gz in place first)\n"
        "(ROOT may also be the data_aishell folder itself.)"
    )

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        task = self.task_or_default(task)
        base = root / "data_aishell" if (root / "data_aishell").is_dir() else root
        transcripts = read_transcript(self.require(base / TRANSCRIPT, "transcript file"))
        split_dir = base / "wav" / split
        if not split_dir.is_dir():
            archives = sorted((base / "wav").glob("*.tar.gz")) if (base / "wav").is_dir() else []
            hint = (
                f" ({len(archives)} speaker archives are still packed: run "
                f"`cd {base / 'wav'} && for f in *.tar.gz; do tar xzf $f; done`)"
                if archives
                else ""
            )
            raise self.layout_error(f"{split_dir} does not exist{hint}")
        skipped = Skipped(self, split)
        for wav in sorted(split_dir.glob("*/*.wav")):
            text = transcripts.get(wav.stem)
            if text is None:
                skipped.add("no transcript line for the wav file", wav.name)
                continue
            duration = skipped.duration(wav)
            if duration is None:
                continue
            yield Example(
                id=self.example_id(split, wav.stem),
                audio=str(wav),
                duration=duration,
                task=task,
                audio_lang="zh",
                text_lang="zh",
                target=text,
                meta={"corpus": self.name, "split": split, "speaker": wav.parent.name},
            )
        skipped.warn()


RECIPE = Aishell1()
