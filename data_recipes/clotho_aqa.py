"""Clotho-AQA (Lipping et al., EUSIPCO 2022): questions about Clotho clips, three answers each.

Layout of the Zenodo record (https://zenodo.org/records/6473207)::

    ROOT/audio_files/*.wav
    ROOT/clotho_aqa_{train,val,test}.csv    (file_name, QuestionText, answer, confidence)

Every question was answered by three annotators, one row each; ``confidence`` is the
annotator's own yes / maybe / no. Rows are grouped per (file, question) and, by default, the
target is the majority answer after normalisation (lower case, no trailing period): two of
three agreeing answers win; with three different answers, the one given with the highest
confidence wins, then the first. ``--option answers=all`` instead yields every annotator's row
as its own example (as the ESPnet recipe trains). ``meta.yes_no`` marks yes/no questions,
which Qwen-Audio scores separately. Some CSV rows name files absent from ``audio_files``;
they are skipped with one warning.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qaudio.data import Example
from qaudio.recipe import Recipe, Skipped, read_table

CONFIDENCE_RANK = {"yes": 2, "maybe": 1, "no": 0}
ANSWER_MODES = ("majority", "all")


def normalize_answer(answer: str) -> str:
    return answer.strip().rstrip(".").strip().lower()


def majority_answer(rows: list[dict]) -> str:
    """The answer of the group: strict majority, else highest annotator confidence, else first."""
    answers = [normalize_answer(r["answer"]) for r in rows]
    top, count = Counter(answers).most_common(1)[0]
    if count * 2 > len(answers):
        return top
    ranked = sorted(
        range(len(rows)), key=lambda i: -CONFIDENCE_RANK.get(rows[i].get("confidence", "").strip().lower(), -1)
    )
    return answers[ranked[0]]  # sorted() is stable: ties keep the first row


@dataclass(frozen=True)
class ClothoAQA(Recipe):
    answers: str = "majority"  # majority: one example per question; all: one per annotator's answer

    name = "clotho_aqa"
    tasks = ("aqa",)
    splits = ("train", "val", "test")
    homepage = "https://zenodo.org/records/6473207"
    layout = "ROOT/audio_files/*.wav and ROOT/clotho_aqa_<split>.csv (file_name, QuestionText, answer, confidence)"

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        task = self.task_or_default(task)
        if self.answers not in ANSWER_MODES:
            raise ValueError(
                f"{self.name}: --option answers={self.answers!r}; expected one of {', '.join(ANSWER_MODES)}"
            )
        questions_csv = self.require(root / f"clotho_aqa_{split}.csv", "questions file")
        audio_dir = self.require(root / "audio_files", "audio folder")
        groups: dict[tuple[str, str], list[dict]] = {}
        for row in read_table(questions_csv, columns=("file_name", "QuestionText", "answer")):
            groups.setdefault((row["file_name"].strip(), row["QuestionText"].strip()), []).append(row)
        skipped = Skipped(self, split)
        durations: dict[str, float | None] = {}  # six questions per clip: read each header once
        for n, ((file_name, question), rows) in enumerate(groups.items()):
            if file_name not in durations:
                durations[file_name] = skipped.duration(audio_dir / file_name, "audio file missing from audio_files/")
            duration = durations[file_name]
            if duration is None:
                continue
            all_answers = [normalize_answer(r["answer"]) for r in rows]
            targets = all_answers if self.answers == "all" else [majority_answer(rows)]
            for k, target in enumerate(targets):
                key = f"{file_name}/q{n}" + (f"/a{k}" if self.answers == "all" else "")
                yield Example(
                    id=self.example_id(split, key),
                    audio=str(audio_dir / file_name),
                    duration=duration,
                    task=task,
                    audio_lang="unknown",
                    text_lang="en",
                    question=question,
                    target=target,
                    meta={
                        "corpus": self.name,
                        "split": split,
                        "answers": all_answers,
                        "yes_no": target in ("yes", "no"),
                    },
                )
        skipped.warn()


RECIPE = ClothoAQA()
