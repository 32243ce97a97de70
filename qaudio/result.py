"""The one shape of an answer: what a task spec parses, the pipeline returns, peers return and
reports store (``Result.to_dict()``).

A window's parsed output (:meth:`qaudio.task.Task.parse`) is a Result with text, words, label
and problems; the pipeline stitches the windows of a clip into one Result and adds the timing,
segments, flags and scores. This module imports no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .chunking import Segment


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the clip
    end: float


@dataclass
class Result:
    """The answer for one input. ``error`` is set (and the rest empty) when the input was bad."""

    text: str  # the answer: transcript, translation, caption, answer or label
    task: str  # the task name ("generate" for a raw prompt)
    raw: str = ""  # generated text with tags, windows joined by a space (times are window-relative)
    words: list[Word] | None = None  # word timestamps, when asked for
    label: str | None = None  # classification tasks
    language: str | None = None  # language of ``text``
    error: str | None = None  # what was wrong with this input
    # audio_seconds, windows, seconds (compute share), load_seconds, generated_tokens (None: nothing generated)
    timing: dict = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)  # one per non-silent window, absolute times
    scores: dict[str, float] | None = None  # label -> probability within the label set (constrained decoding)
    problems: list[str] = field(default_factory=list)  # malformed output (e.g. a word without a time)
    flags: list[str] = field(default_factory=list)  # degenerate output or no speech (qaudio.degeneration.FLAGS)
    no_speech_prob: float | None = None  # 1 - speech probability (qaudio.vad); None when not computed

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        """Plain JSON types only (``json.dumps(result.to_dict())`` works)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        d = dict(d)
        d["words"] = None if d.get("words") is None else [Word(**w) for w in d["words"]]
        d["segments"] = [Segment(**s) for s in d.get("segments", [])]
        return cls(**d)
