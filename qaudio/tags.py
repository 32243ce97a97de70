"""Qwen-Audio's hierarchical task tags: the vocabulary, prompt building and output parsing.

Reference: Chu et al., "Qwen-Audio: Advancing Universal Audio Understanding via Unified
Large-Scale Audio-Language Models" (arXiv:2311.07919), section 2.2 "Multitask Pretraining",
and the special-token table of its released tokenizer (``tokenization_qwen.py``,
``AUDIO_ST``). A prompt is a path through five levels of tags:

    transcription tag -> audio language -> task tag -> text language -> timestamps -> instruction
    <|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>

Audio QA replaces the last three levels by ``<|question|>{q}<|answer|>``. Word-level
timestamps interleave time tokens with words: ``<|0.00|> hello<|0.32|><|0.35|> world<|0.80|>``.

This module imports nothing heavier than the standard library, so prompts can be built and
parsed without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# ---- The vocabulary, in the order of the released tokenizer ------------------------------

LANGUAGES: dict[str, str] = {
    "en": "English",
    "zh": "Chinese",
    "de": "German",
    "es": "Spanish",
    "ko": "Korean",
    "fr": "French",
    "ja": "Japanese",
    "it": "Italian",
}
UNKNOWN_LANGUAGE = "unknown"  # the audio-language tag of non-speech audio
AUDIO_LANGUAGES = (*LANGUAGES, UNKNOWN_LANGUAGE)

TRANSCRIPTION_TAGS = {
    "transcript": "<|startoftranscript|>",  # ASR and speech translation
    "analysis": "<|startofanalysis|>",  # every other task
}
TASK_TAGS = ("transcribe", "translate", "caption", "keyword", "question")
INSTRUCTIONS = (
    "caption_audiocaps",
    "caption_clotho",
    "audioset_ontology",
    "caption_plain",
    "itn",
    "wo_itn",
    "named_entity_recognition",
    "audio_grounding",
    "emotion_recognition",
    "music_description",
    "note_analysis",
    "scene",
    "event",
    "vocal_classification",
    "speech_understanding",
)

TIME_STEP = 0.01  # seconds between adjacent time tokens
MAX_TIME = 30.0  # the last time token; also the Whisper encoder window
NUM_TIME_TOKENS = round(MAX_TIME / TIME_STEP) + 1  # 3001: <|0.00|> ... <|30.00|>

SILENCE = "<|sil|>"
TIMESTAMPS = "<|timestamps|>"
NO_TIMESTAMPS = "<|notimestamps|>"
QUESTION = "<|question|>"
ANSWER = "<|answer|>"

# The audio slot in the LLM's input: <|audio_bos|> <|AUDIO|> x N <|audio_eos|>, where N is the
# number of projector outputs (Qwen2-Audio's names, familiar to its users).
AUDIO_BOS = "<|audio_bos|>"
AUDIO_PLACEHOLDER = "<|AUDIO|>"
AUDIO_EOS = "<|audio_eos|>"
# Where a prompt may place the audio itself (the chat style does); without it the audio comes first.
AUDIO_SLOT = AUDIO_BOS + AUDIO_PLACEHOLDER + AUDIO_EOS


def tag(name: str) -> str:
    """``tag("en") == "<|en|>"``."""
    return f"<|{name}|>"


def time_token(seconds: float) -> str:
    """The time token nearest to ``seconds`` on the 0.01 s grid, clamped to [0, 30]."""
    steps = min(max(round(seconds / TIME_STEP), 0), NUM_TIME_TOKENS - 1)
    return f"<|{steps * TIME_STEP:.2f}|>"


def time_tokens() -> list[str]:
    """Every time token, ``<|0.00|>`` to ``<|30.00|>``, in order."""
    return [f"<|{i * TIME_STEP:.2f}|>" for i in range(NUM_TIME_TOKENS)]


def all_special_tokens() -> list[str]:
    """Every tag, time token and audio token, in the released tokenizer's order."""
    return [
        *TRANSCRIPTION_TAGS.values(),
        *(tag(t) for t in ("translate", "transcribe", "caption", "keyword")),
        tag(UNKNOWN_LANGUAGE),
        *(tag(lang) for lang in LANGUAGES),
        "<|zh_tr|>",
        NO_TIMESTAMPS,
        SILENCE,
        TIMESTAMPS,
        *time_tokens(),
        *(tag(i) for i in INSTRUCTIONS),
        "<|pitch|>",
        *(f"<|midi_pitch_{i}|>" for i in range(128)),
        "<|velocity|>",
        *(f"<|midi_velocity_{i}|>" for i in range(128)),
        "<|sonic|>",
        "<|instrument|>",
        QUESTION,
        ANSWER,
        "<|choice|>",
        AUDIO_BOS,
        AUDIO_PLACEHOLDER,
        AUDIO_EOS,
    ]


def add_tag_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add every tag, time token and audio token to a Hugging Face tokenizer as special tokens.

    Returns how many were new (0 on a second call: idempotent). Special tokens are never
    split by the tokenizer's pre-tokenizer, so ``<|0.32|>`` is always one id.
    """
    vocab = tokenizer.get_vocab()
    missing = [t for t in all_special_tokens() if t not in vocab]
    if not missing:
        return 0
    return tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)


# ---- Building prompts --------------------------------------------------------------------


def _check_choice(kind: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; valid choices: {', '.join(choices)}")


@dataclass(frozen=True)
class TagPath:
    """The tags a task fixes: transcription tag, task tag and output instruction.

    The languages, the timestamp flag and the question vary per example, so they are
    arguments of :func:`build_prompt` rather than fields here.
    """

    start: str  # "transcript" (ASR, translation) or "analysis" (everything else)
    task: str  # one of TASK_TAGS
    instruction: str | None = None  # one of INSTRUCTIONS; None for question answering

    def __post_init__(self) -> None:
        _check_choice("transcription tag", self.start, tuple(TRANSCRIPTION_TAGS))
        _check_choice("task tag", self.task, TASK_TAGS)
        if self.task == "question":
            if self.instruction is not None:
                raise ValueError("the question task tag takes no output instruction")
        elif self.instruction is None:
            raise ValueError(f"task tag {self.task!r} needs an output instruction: {', '.join(INSTRUCTIONS)}")
        else:
            _check_choice("output instruction", self.instruction, INSTRUCTIONS)


def build_prompt(
    path: TagPath,
    audio_lang: str,
    text_lang: str = "en",
    timestamps: bool = False,
    question: str | None = None,
) -> str:
    """The tag prompt that follows the audio in the LLM input.

    >>> build_prompt(TagPath("transcript", "transcribe", "wo_itn"), "en", "en")
    '<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>'
    """
    _check_choice("audio language", audio_lang, AUDIO_LANGUAGES)
    head = TRANSCRIPTION_TAGS[path.start] + tag(audio_lang)
    if path.task == "question":
        if not question or not question.strip():
            raise ValueError("the question task needs a non-empty question")
        return f"{head}{QUESTION}{question.strip()}{ANSWER}"
    if question is not None:
        raise ValueError(f"a question was given to the {path.task!r} task, which takes none")
    _check_choice("text language", text_lang, tuple(LANGUAGES))
    assert path.instruction is not None  # TagPath requires one for every task but question
    return (
        head + tag(path.task) + tag(text_lang) + (TIMESTAMPS if timestamps else NO_TIMESTAMPS) + tag(path.instruction)
    )


# Qwen2-Audio-style instructions, for LLMs that follow natural language better than tags.
# Keyed by (task tag, instruction); "{text_lang}" is filled with the language's name.
_NATURAL_PROMPTS: dict[tuple[str, str | None], str] = {
    ("transcribe", "wo_itn"): "Detect the language and recognize the speech:",
    (
        "transcribe",
        "itn",
    ): "Detect the language and recognize the speech, with punctuation and numbers written out as digits:",
    ("translate", "itn"): "Translate the speech into {text_lang}:",
    ("translate", "wo_itn"): "Translate the speech into {text_lang}:",
    ("caption", "caption_clotho"): "Describe the sound in one sentence:",
    ("caption", "caption_audiocaps"): "Describe the sound in one short sentence:",
    ("caption", "caption_plain"): "Describe the audio:",
    ("keyword", "emotion_recognition"): "Recognize the emotion of the speaker:",
    ("keyword", "scene"): "Classify the acoustic scene:",
    ("keyword", "event"): "Name the sound event:",
    ("keyword", "vocal_classification"): "Classify the vocal sound:",
    ("keyword", "note_analysis"): "Name the instrument and the pitch of the note:",
}


def build_natural_prompt(
    path: TagPath,
    audio_lang: str,
    text_lang: str = "en",
    timestamps: bool = False,
    question: str | None = None,
) -> str:
    """A natural-language instruction carrying the same request as :func:`build_prompt`."""
    build_prompt(path, audio_lang, text_lang, timestamps, question)  # same validation
    if path.task == "question":
        assert question is not None  # build_prompt refuses a question task without one
        return question.strip()
    key = (path.task, path.instruction)
    if key not in _NATURAL_PROMPTS:
        valid = ", ".join(f"{t}/{i}" for t, i in _NATURAL_PROMPTS)
        raise ValueError(f"no natural-language prompt for {path.task}/{path.instruction}; defined: {valid}")
    text = _NATURAL_PROMPTS[key].format(text_lang=LANGUAGES[text_lang])
    return text[:-1] + ", with word timestamps:" if timestamps else text


# Qwen2-Audio-Instruct's conversation format (ChatML with its default system turn, each audio
# announced as "Audio k: " inside the user turn), as its processor's default chat template writes
# one user turn of one audio and one instruction, ready for the assistant's answer.
CHAT_SYSTEM = "You are a helpful assistant."
CHAT_START, CHAT_END = "<|im_start|>", "<|im_end|>"  # the assistant's answer ends with CHAT_END


def build_chat_prompt(
    path: TagPath,
    audio_lang: str,
    text_lang: str = "en",
    timestamps: bool = False,
    question: str | None = None,
) -> str:
    """The natural-language request of :func:`build_natural_prompt` in Qwen2-Audio-Instruct's chat turns."""
    request = build_natural_prompt(path, audio_lang, text_lang, timestamps, question)
    return (
        f"{CHAT_START}system\n{CHAT_SYSTEM}{CHAT_END}\n{CHAT_START}user\nAudio 1: {AUDIO_SLOT}\n"
        f"{request}{CHAT_END}\n{CHAT_START}assistant\n"
    )


PROMPT_STYLES = {"tags": build_prompt, "natural": build_natural_prompt, "chat": build_chat_prompt}


# ---- Parsing generated text --------------------------------------------------------------

_ANY_TAG = re.compile(r"<\|[^|<>]*\|>")
_TIME = re.compile(r"<\|(\d+\.\d\d)\|>")


def strip_tags(text: str) -> str:
    """Generated text with every ``<|...|>`` token removed and white space folded."""
    return " ".join(_ANY_TAG.sub(" ", text).split())


def format_timestamped(words: list[tuple[str, float, float]]) -> str:
    """Interleave words with their start and end time tokens (the ``srwt`` target).

    Each word keeps the space before it, as in Whisper's timestamped text: a byte-level BPE
    tokenizes " is" and "is" to different ids, and without the space a word in a timestamped
    transcript shares no token with the same word in a plain one, so what ASR learns does not
    carry over (the demo's timestamped WER was 18.8% against plain ASR's 1.5%).
    """
    return "".join(f"{time_token(s)} {w}{time_token(e)}" for w, s, e in words)


@dataclass
class TimedWords:
    """Words with times parsed from generated text; ``problems`` says what was malformed."""

    words: list[tuple[str, float, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(w for w, _, _ in self.words)

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_timestamped(text: str) -> TimedWords:
    """Parse ``<|s|>word<|e|>...`` back into (word, start, end) triples.

    Malformed output is reported, never silently repaired into wrong times: a word without
    a start or end time keeps the times it has (None for the missing one is not allowed,
    so the neighbour's time is used) and a problem is recorded; times that go backwards
    are recorded as problems too.
    """
    result = TimedWords()
    times: list[float] = []
    prev_end = 0.0
    # Split into alternating [text, time, text, time, ...] pieces; other tags are dropped.
    pieces = _TIME.split(_ANY_TAG.sub(lambda m: m.group(0) if _TIME.fullmatch(m.group(0)) else " ", text))
    for i, piece in enumerate(pieces):
        if i % 2 == 1:
            times.append(float(piece))
            continue
        word = " ".join(piece.split())
        if not word:
            continue
        # A word is framed by the last time before it and the first time after it.
        start = times[-1] if times else None
        after = pieces[i + 1] if i + 1 < len(pieces) else None
        end = float(after) if after is not None else None
        if start is None:
            result.problems.append(f"word {word!r} has no start time")
            start = prev_end
        if end is None:
            result.problems.append(f"word {word!r} has no end time")
            end = start
        if end < start:
            result.problems.append(f"word {word!r} ends ({end:.2f}) before it starts ({start:.2f})")
        if start < prev_end:
            result.problems.append(f"word {word!r} starts ({start:.2f}) before the previous word ends ({prev_end:.2f})")
        result.words.append((word, start, end))
        prev_end = max(prev_end, end)
    return result


def parse_label(text: str, labels: list[str] | tuple[str, ...] | None = None) -> tuple[str, list[str]]:
    """A class label from generated text: tags stripped, lower-cased, checked against ``labels``.

    Returns (label, problems); a label outside the set is kept as generated and reported.
    """
    label = strip_tags(text).strip().strip(".").lower()
    problems = []
    if not label:
        problems.append("empty label")
    elif labels is not None and label not in labels:
        problems.append(f"label {label!r} is not one of {', '.join(labels)}")
    return label, problems
