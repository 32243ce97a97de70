"""What a task is (its tag path, how its target is written, how output is parsed, its metric),
and what is asked of it for one clip (a :class:`Request`).

Task specs live in the top-level ``tasks/`` folder, one small file each, as instances of
:class:`Task` (or of one of the two subclasses here). The base class is one level deep on
purpose: a task differs from another in data (tags, metric, labels, capabilities), and only
timestamped and classification tasks differ in behaviour (target format and parsing).

One request path: :meth:`Task.request` is the one place request defaults and checks live
(the answer's language, timestamps turning a task into its timestamped variant, language
names), :meth:`qaudio.data.Example.request` asks a manifest example through it, and
:meth:`Task.prompt` is the one place a prompt is built. ``qaudio prompt``, training,
inference, the server and the benchmarks all go through these two, so a prompt printed is
the prompt trained on and the prompt sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .data import Example
from .result import Result, Word
from .tags import (
    AUDIO_LANGUAGES,
    LANGUAGES,
    PROMPT_STYLES,
    TIMESTAMPS,
    TRANSCRIPTION_TAGS,
    UNKNOWN_LANGUAGE,
    TagPath,
    format_timestamped,
    parse_label,
    parse_timestamped,
    strip_tags,
)

# The cap on generated tokens of a raw prompt, which names no task: a 30-s window holds about
# 90 spoken words, and a timestamped word costs two extra time tokens.
RAW_MAX_NEW_TOKENS = {"timestamps": 512, "text": 256}


class RequestError(ValueError):
    """A request that cannot be asked: the message names the bad value and what is valid."""


class EmptyTargetError(ValueError):
    """A training example without a target to learn (an empty text, or no label)."""


@dataclass(frozen=True)
class Task:
    name: str  # the name used in manifests, on the command line and in reports
    tag_path: TagPath  # the tags this task fixes (languages vary per example)
    metric: str  # the metric family that scores it: wer, bleu, caption, aqa, accuracy, timestamps
    description: str = ""
    speech: bool = True  # False: non-speech audio, whose audio-language tag is <|unknown|>
    timestamps: bool = False  # the prompt asks for <|timestamps|>
    profile: str | None = (
        None  # metric profile that scores it by default (an anchor's convention); None: the family's first
    )
    # The task run instead when word timestamps are asked of this one (asr -> srwt); None: it has none.
    timestamped_variant: Task | None = None
    # The answer is the clip's speech (ASR, translation): a clip without speech has no answer.
    # Tasks about sounds (captions, questions, labels) answer non-speech audio too.
    transcribes_speech: bool = False
    # A long example may be cut into windows at its word times (transcription with words).
    chunks_at_words: bool = False
    max_new_tokens: int = 128  # generation cap by default (a caption, an answer or a label is short)
    aliases: tuple[str, ...] = ()  # friendlier names accepted wherever a task name is (classify(task="emotion"))
    # The hub's task type (pipeline tag) for this task's results in a model card's model-index.
    hub_task_type: str = "audio-text-to-text"

    def metric_options(self) -> dict:
        """Options the task's metric family needs besides predictions and references."""
        return {}

    def request(
        self,
        audio_lang: str | None = None,
        text_lang: str | None = None,
        timestamps: bool = False,
        question: str | None = None,
        instruction: str | None = None,
        labels: Sequence[str] | None = None,
        generate_kwargs: dict | None = None,
    ) -> Request:
        """A request to this task, defaults applied and checked (the one place they live).

        ``audio_lang``: the language spoken (default English: the model is told the language,
        it does not detect it); non-speech tasks always say ``unknown``. ``text_lang``: the
        answer's language (default: the spoken language, or English for non-speech audio).
        ``timestamps`` runs the task's timestamped variant. ``instruction``: another output
        instruction of the same task (AudioCaps captions use ``caption_audiocaps``).
        ``labels``: answer with the most likely of these instead of generating.
        Bad values raise :class:`RequestError` naming the value and the valid choices.
        """
        task = self
        if timestamps and not task.timestamps:
            if task.timestamped_variant is None:
                raise RequestError(
                    f"word timestamps are available for transcription only (a task whose spec sets "
                    f"timestamped_variant, as asr does), not {task.name!r}"
                )
            task = task.timestamped_variant
        audio_lang = audio_lang or "en"
        _check_language("spoken language", audio_lang, AUDIO_LANGUAGES)
        if text_lang is None:
            text_lang = audio_lang if task.speech and audio_lang != UNKNOWN_LANGUAGE else "en"
        _check_language("output language", text_lang, tuple(LANGUAGES))
        if labels is not None:
            labels = tuple(labels)
            if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
                raise RequestError(f"labels must be a non-empty list of non-empty strings, got {list(labels)!r}")
        request = Request(
            task,
            audio_lang if task.speech else UNKNOWN_LANGUAGE,
            text_lang,
            question,
            instruction or None,
            labels,
            None,
            tuple(sorted((generate_kwargs or {}).items())),
        )
        task.prompt(request)  # checks the question and the instruction against the tag grammar
        return request

    def prompt(self, request: Request, style: str = "tags") -> str:
        """The prompt for ``request`` in the given style (``tags``, ``natural`` or ``chat``)."""
        if style not in PROMPT_STYLES:
            raise RequestError(f"unknown prompt style {style!r}; valid choices: {', '.join(PROMPT_STYLES)}")
        try:
            # A corpus may pick another output instruction of the same task, e.g. AudioCaps
            # captions use <|caption_audiocaps|>.
            path = (
                TagPath(self.tag_path.start, self.tag_path.task, request.instruction)
                if request.instruction
                else self.tag_path
            )
            return PROMPT_STYLES[style](path, request.audio_lang, request.text_lang, self.timestamps, request.question)
        except RequestError:
            raise
        except ValueError as e:  # the tag grammar's checks (qaudio.tags), as this request's error
            raise RequestError(str(e)) from None

    def targets(self, example: Example) -> list[str]:
        """Every acceptable training target (captions have several references)."""
        refs = [r.strip() for r in example.references if r.strip()]
        if not refs:
            raise EmptyTargetError(f"example {example.id!r} has an empty target")
        return refs

    def parse(self, generated: str) -> Result:
        """One window's generated text -> its answer (text; words and label where the task has them)."""
        return Result(text=strip_tags(generated), task=self.name, raw=generated)


def _check_language(kind: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RequestError(f"unknown {kind} {value!r}; expected one of {', '.join(choices)}")


@dataclass(frozen=True)
class TimestampTask(Task):
    """Transcription with word timestamps: targets interleave time tokens and words."""

    timestamps: bool = True

    def targets(self, example: Example) -> list[str]:
        if not example.words:
            raise ValueError(f"example {example.id!r} of task {self.name!r} has no 'words' with times")
        return [format_timestamped([(w, float(s), float(e)) for w, s, e in example.words])]

    def parse(self, generated: str) -> Result:
        return parse_words(generated, self.name)


def parse_words(generated: str, task: str) -> Result:
    """Timestamped output -> text, words (window-relative times) and what was malformed."""
    timed = parse_timestamped(generated)
    return Result(
        text=timed.text,
        task=task,
        raw=generated,
        problems=timed.problems,
        words=[Word(w, float(s), float(e)) for w, s, e in timed.words],
    )


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
        given = example.label or example.target or ""
        if not isinstance(given, str):
            raise ValueError(
                f"example {example.id!r} of task {self.name!r}: the label must be one string, got {given!r}"
            )
        label = given.strip().lower()
        if not label:
            raise EmptyTargetError(f"example {example.id!r} of task {self.name!r} has no label")
        return [label]

    def parse(self, generated: str, labels: tuple[str, ...] | None = None) -> Result:
        label, problems = parse_label(generated, labels or self.labels or None)
        return Result(text=label, task=self.name, raw=generated, label=label, problems=problems)


@dataclass(frozen=True)
class Request:
    """What is asked of one clip: everything its prompt needs, and how the answer is made.

    Built by :meth:`Task.request` (defaults and checks) or :meth:`qaudio.data.Example.request`;
    a raw prompt (tags and all) is :meth:`Request.raw`. Hashable: a batch groups like requests.
    """

    task: Task | None  # None: a raw prompt, parsed by tags only
    audio_lang: str = "en"  # the audio-language tag (unknown for non-speech tasks)
    text_lang: str = "en"  # the answer's language
    question: str | None = None  # question answering
    instruction: str | None = None  # another output instruction of the task; None: its own
    labels: tuple[str, ...] | None = None  # choose the most likely of these instead of generating
    raw_prompt: str | None = None  # the prompt of a raw request, used as given
    generate_kwargs: tuple[tuple[str, Any], ...] = ()  # sorted items, hashable

    @classmethod
    def raw(cls, prompt: str, generate_kwargs: dict | None = None) -> Request:
        """A raw prompt, used as given (tags and all); word times are parsed if it asks for them."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise RequestError(
                "a raw prompt must be a non-empty string, e.g. "
                "'<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>'"
            )
        return cls(None, raw_prompt=prompt, generate_kwargs=tuple(sorted((generate_kwargs or {}).items())))

    @property
    def name(self) -> str:
        return self.task.name if self.task is not None else "generate"

    def prompt(self, style: str = "tags") -> str:
        """The text after the audio slot: the task's prompt (:meth:`Task.prompt`), or the raw one."""
        return self.task.prompt(self, style) if self.task is not None else self._raw

    @property
    def timestamps(self) -> bool:
        return self.task.timestamps if self.task is not None else TIMESTAMPS in self._raw

    @property
    def _raw(self) -> str:
        """The raw prompt of a request without a task (the constructors give one or the other)."""
        assert self.raw_prompt is not None, "a request without a task needs a raw prompt"
        return self.raw_prompt

    @property
    def language(self) -> str | None:
        """The answer's language (joins windows; Result.language); None for a label or a raw prompt."""
        if self.task is None or self.labels or isinstance(self.task, ClassificationTask):
            return None
        return self.text_lang

    @property
    def transcribes_speech(self) -> bool:
        """Whether the answer is the clip's speech, so that a clip without speech has none."""
        if self.labels:
            return False
        if self.task is not None:
            return self.task.transcribes_speech
        return TRANSCRIPTION_TAGS["transcript"] in self._raw

    def max_new_tokens(self) -> int:
        """The generation cap unless one is given: the task's, or by the raw prompt's kind."""
        if self.task is not None:
            return self.task.max_new_tokens
        return RAW_MAX_NEW_TOKENS["timestamps" if self.timestamps else "text"]

    def parse(self, generated: str) -> Result:
        """One window's generated text -> its answer, by the task (a raw prompt: by its tags)."""
        if self.task is not None:
            return self.task.parse(generated)
        return (
            parse_words(generated, self.name)
            if self.timestamps
            else Result(text=strip_tags(generated), task=self.name, raw=generated)
        )
