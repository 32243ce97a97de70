"""LibriSpeech (Panayotov et al., ICASSP 2015; OpenSLR 12): read English audiobook speech.

Layout, as the OpenSLR tarballs unpack::

    LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac

Each ``.trans.txt`` line is ``<utt-id> <TRANSCRIPT IN UPPER CASE>``. The ``srwt`` task needs
word times, which LibriSpeech does not ship: it reads the Montreal-Forced-Aligner alignments
of https://github.com/CorentinJ/librispeech-alignments (the recommended TXT format), merged
into the same tree as ``<speaker>-<chapter>.alignment.txt``, with lines
``<utt-id> ",WORD,,WORD," "0.490,0.890,..."``: words (empty = silence) and each one's end time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from qaudio.data import Example
from qaudio.recipe import Recipe, Skipped

ALIGNMENTS_URL = "https://github.com/CorentinJ/librispeech-alignments"


def read_transcripts(path: Path) -> Iterator[tuple[str, str]]:
    """(utterance id, transcript) pairs of one chapter's ``.trans.txt``."""
    for line in path.read_text(encoding="utf-8").splitlines():
        utt, _, text = line.strip().partition(" ")
        if utt:
            yield utt, text.strip()


def read_alignments(path: Path) -> dict[str, list[list]]:
    """Utterance id -> [[word, start_s, end_s], ...] from a ``.alignment.txt`` file.

    A word starts where the previous entry (word or silence) ends; silences are dropped.
    """
    alignments = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise ValueError(f'{path}:{lineno}: expected \'<utt-id> "<words>" "<end times>"\', got {line!r}')
        utt, words, ends = parts[0], parts[1].strip('"').split(","), [float(t) for t in parts[2].strip('"').split(",")]
        if len(words) != len(ends):
            raise ValueError(f"{path}:{lineno}: {len(words)} words but {len(ends)} end times")
        starts = [0.0, *ends[:-1]]
        alignments[utt] = [[w, s, e] for w, s, e in zip(words, starts, ends) if w]
    return alignments


class LibriSpeech(Recipe):
    name = "librispeech"
    tasks = ("asr", "srwt")
    splits = (
        "train-clean-100",
        "train-clean-360",
        "train-other-500",
        "dev-clean",
        "dev-other",
        "test-clean",
        "test-other",
    )
    homepage = "https://www.openslr.org/12"
    layout = (
        "ROOT/LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt\n"
        "ROOT/LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac\n"
        "(ROOT may also be the LibriSpeech folder itself.) For --task srwt, the word alignments\n"
        f"<speaker>-<chapter>.alignment.txt from {ALIGNMENTS_URL} merged into the same tree."
    )

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        task = self.task_or_default(task)
        split_dir = self.find(root, f"LibriSpeech/{split}", split, what=f"split folder {split!r}")
        if task == "srwt" and next(split_dir.glob("*/*/*.alignment.txt"), None) is None:
            raise self.layout_error(f"--task srwt needs word alignments, and {split_dir} has no *.alignment.txt")
        skipped = Skipped(self, split)
        for trans in sorted(split_dir.glob("*/*/*.trans.txt")):
            chapter_dir = trans.parent
            speaker, chapter = chapter_dir.parent.name, chapter_dir.name
            alignments = {}
            if task == "srwt":
                align_file = chapter_dir / f"{speaker}-{chapter}.alignment.txt"
                alignments = read_alignments(align_file) if align_file.is_file() else {}
            for utt, text in read_transcripts(trans):
                flac = chapter_dir / f"{utt}.flac"
                if task == "srwt" and utt not in alignments:
                    # 127 utterances have no TXT alignment (see the alignments' unaligned.txt).
                    skipped.add("no word alignment for the utterance", utt)
                    continue
                duration = skipped.duration(flac)
                if duration is None:
                    continue
                yield Example(
                    id=self.example_id(split, utt),
                    audio=str(flac),
                    duration=duration,
                    task=task,
                    audio_lang="en",
                    text_lang="en",
                    target=text,
                    words=alignments.get(utt),
                    meta={"corpus": self.name, "split": split, "speaker": speaker, "chapter": chapter},
                )
        skipped.warn()


RECIPE = LibriSpeech()
