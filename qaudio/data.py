"""The example schema: one record is one training or test example, stored as a JSONL line.

Every stage speaks this plain record: corpus recipes produce it, the synthetic corpus writes
it, training and evaluation read it, and ``qaudio data`` prints it. Fields:

=============  ==============================================================================
``id``          unique string within a manifest
``audio``       path to the audio file, relative to the manifest's folder or absolute
``duration``    seconds (float > 0)
``task``        a task name (asr, s2tt, srwt, aac, aqa, ser, asc, vsc, mna, or a user's task)
``audio_lang``  language of the speech, or "unknown" for non-speech audio
``text_lang``   language of the target text
``target``      the reference text; for captions a list of reference texts
``question``    the question, for audio question answering
``words``       [[word, start_s, end_s], ...] for word timestamps
``label``       the class label, for classification tasks
``meta``        free-form dict (speaker, voice, template, source corpus ...)
=============  ==============================================================================

This module imports no torch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .tags import AUDIO_LANGUAGES, LANGUAGES


class ManifestError(ValueError):
    """A manifest line that does not fit the schema; the message names the line and the field."""


@dataclass
class Example:
    id: str
    audio: str
    duration: float
    task: str
    audio_lang: str = "en"
    text_lang: str = "en"
    target: str | list[str] = ""
    question: str | None = None
    words: list[list] | None = None
    label: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = _field_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def references(self) -> list[str]:
        """The target as a list of reference texts (captions have several)."""
        return list(self.target) if isinstance(self.target, list) else [self.target]

    def request(self, task, **options):
        """This example as a request to ``task`` (its :class:`qaudio.task.Task`): the languages,
        question and output instruction (``meta["instruction"]``, e.g. AudioCaps captions) its
        prompt is built from, through :meth:`Task.request`, the one place defaults and checks
        live. ``options`` (``labels``, ``generate_kwargs``) go to Task.request."""
        return task.request(
            audio_lang=self.audio_lang,
            text_lang=self.text_lang,
            question=self.question,
            instruction=self.meta.get("instruction") or None,
            **options,
        )

    def to_json(self) -> str:
        record = {k: v for k, v in asdict(self).items() if v is not None and v != {}}
        return json.dumps(record, ensure_ascii=False)


_REQUIRED = ("id", "audio", "duration", "task")
_FIELDS = {f for f in Example.__dataclass_fields__}


def _field_problems(ex: Example) -> list[str]:
    p = []
    if not isinstance(ex.id, str) or not ex.id:
        p.append("field 'id' must be a non-empty string")
    if not isinstance(ex.audio, str) or not ex.audio:
        p.append("field 'audio' must be a non-empty path string")
    if not isinstance(ex.duration, (int, float)) or not math.isfinite(ex.duration) or ex.duration <= 0:
        p.append(f"field 'duration' must be a positive number of seconds, got {ex.duration!r}")
    if not isinstance(ex.task, str) or not ex.task:
        p.append("field 'task' must be a task name")
    if ex.audio_lang not in AUDIO_LANGUAGES:
        p.append(f"field 'audio_lang' is {ex.audio_lang!r}; expected one of {', '.join(AUDIO_LANGUAGES)}")
    if ex.text_lang not in LANGUAGES:
        p.append(f"field 'text_lang' is {ex.text_lang!r}; expected one of {', '.join(LANGUAGES)}")
    if isinstance(ex.target, list):
        if not all(isinstance(t, str) for t in ex.target):
            p.append("field 'target' must be a string or a list of strings")
    elif not isinstance(ex.target, str):
        p.append("field 'target' must be a string or a list of strings")
    if ex.words is not None:
        for i, w in enumerate(ex.words):
            if not (
                isinstance(w, (list, tuple))
                and len(w) == 3
                and isinstance(w[0], str)
                and all(isinstance(t, (int, float)) for t in w[1:])
                and 0 <= w[1] <= w[2]
            ):
                p.append(f"field 'words' item {i} must be [word, start_s, end_s] with 0 <= start <= end, got {w!r}")
                break
    if not isinstance(ex.meta, dict):
        p.append("field 'meta' must be an object")
    return p


def example_from_dict(record: dict, where: str = "record") -> Example:
    """Validate a plain dict into an :class:`Example`; errors name ``where`` and the field."""
    if not isinstance(record, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise ManifestError(f"{where}: missing required field(s) {', '.join(missing)}")
    unknown = sorted(set(record) - _FIELDS)
    if unknown:
        raise ManifestError(
            f"{where}: unknown field(s) {', '.join(unknown)}; schema fields: {', '.join(sorted(_FIELDS))}"
        )
    try:
        return Example(**record)
    except (TypeError, ValueError) as e:
        raise ManifestError(f"{where}: {e}") from None


def resolve_audio(example: Example, manifest_dir: str | os.PathLike | None) -> str:
    """The absolute audio path: relative paths are relative to the manifest's folder."""
    if os.path.isabs(example.audio) or manifest_dir is None:
        return example.audio
    return os.path.normpath(os.path.join(manifest_dir, example.audio))


def read_manifest(path: str | os.PathLike, absolute_audio: bool = True) -> Iterator[Example]:
    """Yield the examples of a JSONL manifest; a bad line raises naming file, line and field.

    With ``absolute_audio`` the ``audio`` field is resolved against the manifest's folder,
    so the examples can be used from any working directory.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist (expected a JSONL file, one example per line)")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            ex = example_from_dict(record, where)
            if absolute_audio:
                ex.audio = resolve_audio(ex, path.parent)
            yield ex


def write_manifest(
    examples: Iterable[Example], path: str | os.PathLike | None, relative_to_manifest: bool = True
) -> int:
    """Write examples as JSONL (to stdout when ``path`` is None); returns the count.

    Audio paths under the manifest's folder are written relative to it, so a corpus folder
    can be moved as a whole.
    """
    import sys

    out = sys.stdout if path is None else open(path, "w", encoding="utf-8")
    base = None if path is None else Path(path).resolve().parent
    n = 0
    try:
        for ex in examples:
            if base is not None and relative_to_manifest and os.path.isabs(ex.audio):
                try:
                    ex = Example(**{**asdict(ex), "audio": str(Path(ex.audio).resolve().relative_to(base))})
                except ValueError:
                    pass  # outside the manifest's folder: keep absolute
            out.write(ex.to_json() + "\n")
            n += 1
    finally:
        if path is not None:
            out.close()
    return n
