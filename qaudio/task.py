"""What a task is: its tag path, how its target is written, how output is parsed, its metric.

Task specs live in the top-level ``tasks/`` folder, one small file each, as instances of
:class:`Task` (or of one of the two subclasses here). The base class is one level deep on
purpose: a task differs from another in data (tags, metric, labels), and only timestamped
and classification tasks differ in behaviour (target format and parsing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .data import Example
from .tags import PROMPT_STYLES, TagPath, format_timestamped, parse_label, parse_timestamped, strip_tags


@dataclass
class Prediction:
    """Parsed model output: text always; words for timestamps; label for classification."""

    text: str
    words: list[tuple[str, float, float]] | None = None
    label: str | None = None
    problems: list[str] = field(default_factory=list)  # what was malformed in the output


class MissingTarget(ValueError):
    """An example has nothing to train on for its task: an empty target, or no label."""


@dataclass(frozen=True)
class Task:
    name: str  # the name used in manifests, on the command line and in reports
    tag_path: TagPath  # the tags this task fixes (languages vary per example)
    metric: str  # the metric family that scores it: wer, bleu, caption, aqa, accuracy, timestamps
    description: str = ""
    speech: bool = True  # False: non-speech audio, whose audio-language tag is <|unknown|>
    timestamps: bool = False  # the prompt asks for <|timestamps|>
    profile: str | None = None  # metric profile that scores it by default (an anchor's convention); None: the family's first
    chunk_at_words: bool = False  # a clip longer than the encoder window may be cut at word times (transcripts)

    def metric_options(self) -> dict:
        """Options the task's metric family needs besides predictions and references."""
        return {}

    def audio_lang(self, example: Example) -> str:
        return example.audio_lang if self.speech else "unknown"

    def prompt(self, example: Example, style: str = "tags") -> str:
        """The prompt for ``example`` in the given style (``tags`` or ``natural``)."""
        if style not in PROMPT_STYLES:
            raise ValueError(f"unknown prompt style {style!r}; valid choices: {', '.join(PROMPT_STYLES)}")
        path = self.tag_path
        # A corpus may pick another output instruction of the same task, e.g. AudioCaps
        # captions use <|caption_audiocaps|>: the recipe writes it into meta["instruction"].
        if example.meta.get("instruction"):
            path = TagPath(path.start, path.task, example.meta["instruction"])
        return PROMPT_STYLES[style](path, self.audio_lang(example), example.text_lang, self.timestamps, example.question)

    def targets(self, example: Example) -> list[str]:
        """Every acceptable training target (captions have several references)."""
        refs = [r.strip() for r in example.references if r.strip()]
        if not refs:
            raise MissingTarget(f"example {example.id!r} has an empty target")
        return refs

    def parse(self, generated: str) -> Prediction:
        return Prediction(text=strip_tags(generated))


@dataclass(frozen=True)
class TimestampTask(Task):
    """Transcription with word timestamps: targets interleave time tokens and words."""

    timestamps: bool = True

    def targets(self, example: Example) -> list[str]:
        if not example.words:
            raise ValueError(f"example {example.id!r} of task {self.name!r} has no 'words' with times")
        return [format_timestamped([(w, float(s), float(e)) for w, s, e in example.words])]

    def parse(self, generated: str) -> Prediction:
        timed = parse_timestamped(generated)
        return Prediction(text=timed.text, words=timed.words, problems=timed.problems)


@dataclass(frozen=True)
class ClassificationTask(Task):
    """Single-label classification; ``labels`` is the label set decoding can be constrained to."""

    labels: tuple[str, ...] = ()
    # A corpus's own label names -> this task's (MELD's "joy" is "happy"); scoring accepts both.
    label_aliases: dict[str, str] = field(default_factory=dict, hash=False)

    def metric_options(self) -> dict:
        options = {"labels": list(self.labels)} if self.labels else {}
        return {**options, "aliases": dict(self.label_aliases)} if self.label_aliases else options

    def targets(self, example: Example) -> list[str]:
        label = (example.label or example.target or "").strip().lower()
        if not label:
            raise MissingTarget(f"example {example.id!r} of task {self.name!r} has no label")
        return [label]

    def parse(self, generated: str, labels: tuple[str, ...] | None = None) -> Prediction:
        label, problems = parse_label(generated, labels or self.labels or None)
        return Prediction(text=label, label=label, problems=problems)
