"""MELD (Poria et al., ACL 2019): emotion of utterances from the TV series Friends.

``MELD.Raw.tar.gz`` holds ``{train,dev,test}_sent_emo.csv`` (columns ``Sr No., Utterance,
Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season, Episode, StartTime,
EndTime``) and the clips as video, ``dia<D>_utt<U>.mp4``, in ``train_splits/``,
``dev_splits_complete/`` and ``output_repeated_splits_test/``. libsndfile reads no mp4, so
the user extracts the audio once, keeping the names, for example::

    cd MELD.Raw/train_splits && for f in *.mp4; do ffmpeg -i "$f" -vn -ac 1 -ar 16000 "${f%.mp4}.wav"; done

The wav files are looked for in ``audio/<split>/``, in the official video folder, or in
``<split>/``. Emotions map onto the ser task's labels through its ``label_aliases`` (joy ->
happy, sadness -> sad, anger -> angry; neutral, surprise, fear and disgust as they are). The CSVs' punctuation is
mangled in places (``â\\x80\\x99`` or ``\\x92`` for ``’``); the utterance text kept in
``meta.text`` is repaired. In the release, dev clip dia110_utt7 has no video and train clip
dia125_utt3 is corrupt (declare-lab/MELD issues 22 and 39); clips without a wav are skipped
with one warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from qaudio.data import Example
from qaudio.recipe import Recipe, Skipped, audio_index, read_table
from qaudio.specs import get_task

EMOTIONS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")  # MELD's names; the ser task's
# label_aliases map them onto its label set (joy -> happy), in one place for recipe and metric.
VIDEO_FOLDERS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


def repair_text(raw: str) -> str:
    """Text of a CSV read as Latin-1, repaired: ``heâ\\x80\\x99s`` and ``he\\x92s`` -> ``he’s``.

    The file is UTF-8, but some rows were decoded as Latin-1 and re-encoded once more, and
    some carry Windows-1252 punctuation as C1 control characters. Reading as Latin-1 never
    fails; undoing up to two UTF-8 round trips and mapping C1 characters through cp1252
    recovers the text. Plain ASCII passes through unchanged.
    """
    text = raw
    for _ in range(2):
        try:
            fixed = text.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            break
        if fixed == text:
            break
        text = fixed
    return "".join(c.encode("latin-1").decode("cp1252", errors="replace") if "\x80" <= c <= "\x9f" else c for c in text)


class MELD(Recipe):
    name = "meld"
    tasks = ("ser",)
    splits = ("train", "dev", "test")
    homepage = "https://affective-meld.github.io"
    layout = (
        "ROOT/<split>_sent_emo.csv (or ROOT/MELD.Raw/<split>_sent_emo.csv)\n"
        "and the audio, extracted by you from the mp4 clips as dia<D>_utt<U>.wav, in one of\n"
        "ROOT/audio/<split>/, ROOT/{train_splits,dev_splits_complete,output_repeated_splits_test}/, ROOT/<split>/"
    )

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        task = self.task_or_default(task)
        base = root / "MELD.Raw" if (root / "MELD.Raw").is_dir() else root
        ser = get_task("ser")
        labels, to_label = ser.labels, {e: ser.label_aliases.get(e, e) for e in EMOTIONS}
        unknown = sorted(set(to_label.values()) - set(labels))
        if unknown:
            raise ValueError(f"{self.name}: emotions {unknown} map outside the ser labels {labels}")
        csv_path = self.require(base / f"{split}_sent_emo.csv", "annotation file")
        rows = read_table(csv_path, columns=COLUMNS, encoding="latin-1")
        candidates = [base / "audio" / split, base / VIDEO_FOLDERS[split], base / split]
        audio_dir = next((d for d in candidates if d.is_dir() and any(d.glob("dia*_utt*.wav"))), None)
        if audio_dir is None:
            raise self.layout_error("no extracted dia<D>_utt<U>.wav files in " + ", ".join(str(d) for d in candidates))
        files = audio_index(audio_dir, (".wav",))
        skipped = Skipped(self, split)
        for row in rows:
            stem = f"dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}"
            emotion = row["Emotion"].strip().lower()
            if emotion not in EMOTIONS:
                raise ValueError(
                    f"{self.name}: {stem} has emotion {row['Emotion']!r}; expected one of {', '.join(EMOTIONS)}"
                )
            wav = files.get(stem)
            if wav is None:
                skipped.add("no extracted wav for the utterance", stem)
                continue
            duration = skipped.duration(wav)
            if duration is None:
                continue
            yield Example(
                id=self.example_id(split, stem),
                audio=str(wav),
                duration=duration,
                task=task,
                audio_lang="en",
                text_lang="en",
                label=to_label[emotion],
                meta={
                    "corpus": self.name,
                    "split": split,
                    "speaker": repair_text(row["Speaker"]),
                    "text": repair_text(row["Utterance"]),
                    "emotion": emotion,
                    "sentiment": row.get("Sentiment", ""),
                },
            )
        skipped.warn()


RECIPE = MELD()
