"""Degenerate answers: loops, echoed prompts, empty or cut-off output, non-text runs.

Audio-LLMs fail in a few recognisable ways that an error rate silently absorbs: a decoder
stuck in a loop ("the the the ...", or "crcrcrcr" with no spaces), an answer that repeats the
prompt's tags or question, nothing at all, an answer that stopped only because it hit
``max_new_tokens``, or runs of punctuation and broken bytes ("!!!!", "\\ufffd"). Every
generated answer is checked here (:func:`detect`) and the names found are listed in
``Result.flags``; ``qaudio eval`` counts them per benchmark (:func:`count_flags`).

The loop criteria follow common practice in decoders: Whisper's temperature fallback treats
an answer whose gzip compression ratio exceeds 2.4 as repetitive (Radford et al.,
arXiv:2212.04356, section 4.5); here that is combined with a direct count of consecutive
repeats of any word n-gram (n <= 4) and of any short character period (for loops inside a
single "word"). Recovery re-decodes with Hugging Face ``generate``'s ``repetition_penalty``
(Keskar et al., arXiv:1909.05858, section 4.1) and ``no_repeat_ngram_size``
(:data:`RETRY_GENERATE_KWARGS`).

Torch-free: it imports only the standard library.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass

# flag -> what it means (the report prints these); one place for every flag's name.
FLAGS: dict[str, str] = {
    "repetition": "a loop: a word n-gram or a short character sequence repeated many times in a row",
    "echo": "the answer repeats the prompt (its task tags, instruction or question)",
    "empty": "no answer text although the clip was decoded",
    "truncated": "generation stopped at max_new_tokens, not at the end token",
    "non_text": "a run of punctuation/symbols, undecodable bytes or control characters",
    "no_speech": "the clip is silent or holds no speech (answered with empty text)",
    "retried": "the answer was degenerate and was decoded again with a repetition penalty",
}
# Flags that a second decode with a repetition penalty can fix (no_speech is a verdict on the input).
RETRYABLE = ("repetition", "echo", "truncated", "non_text")
# What the retry adds to generate: penalise repeated tokens, forbid repeating any 4-gram.
RETRY_GENERATE_KWARGS = {"repetition_penalty": 1.3, "no_repeat_ngram_size": 4}
ON_DEGENERATE = ("keep", "retry")  # what qaudio does with a degenerate answer


@dataclass(frozen=True)
class Limits:
    """Thresholds of :func:`detect`; defaults flag loops, not ordinary emphasis ("very very")."""

    max_ngram: int = 4  # longest word n-gram checked for consecutive repeats
    ngram_repeats: int = 4  # an n-gram (n >= 2) occurring this many times in a row is a loop
    word_repeats: int = 5  # a single word this many times in a row is a loop ("no no no no no")
    char_period: int = 10  # longest character period checked inside text ("crcrcr": period 2)
    char_repeats: int = 6  # a period repeated this many times in a row (and >= min_loop_chars) is a loop
    min_loop_chars: int = 12  # shorter character repeats are words ("hahaha", "mississippi")
    compression_ratio: float = 2.4  # Whisper's threshold on len(utf8) / len(zlib(utf8))
    min_ratio_chars: int = 80  # short texts compress badly: the ratio says nothing below this
    non_text_run: int = 4  # this many punctuation/symbol characters in a row ("!!!!", "?!?!")
    min_echo_chars: int = 12  # an instruction or question shorter than this may be a real answer


DEFAULT_LIMITS = Limits()
_TAG = re.compile(r"<\|[^|<>]*\|>")
_TIME_TAG = re.compile(r"<\|\d+\.\d\d\|>")  # time tokens are part of timestamped answers
_WORD = re.compile(r"\S+")


def compression_ratio(text: str) -> float:
    """Whisper's repetition check: UTF-8 length over zlib-compressed length (0 for empty text)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def longest_ngram_run(words: list[str], n: int) -> int:
    """The most consecutive repeats of any ``n``-word sequence (1 when nothing repeats)."""
    best = 1 if len(words) >= n else 0
    for phase in range(n):  # a run of n-gram repeats is aligned to one phase mod n
        run, prev = 0, None
        for k in range(phase, len(words) - n + 1, n):
            gram = tuple(words[k : k + n])
            run = run + 1 if gram == prev else 1
            prev = gram
            best = max(best, run)
    return best


def _char_loop(text: str, limits: Limits) -> bool:
    for period in range(1, limits.char_period + 1):
        repeats = max(limits.char_repeats, -(-limits.min_loop_chars // period))
        # (.{p})\1{r-1}: a p-character unit followed by r-1 copies of itself
        if re.search(rf"(.{{{period}}})\1{{{repeats - 1}}}", text, flags=re.DOTALL):
            return True
    return False


def is_repetitive(text: str, limits: Limits = DEFAULT_LIMITS) -> bool:
    """A loop: n-gram repeats, a character-period loop, or Whisper's compression-ratio test."""
    words = [w.lower() for w in _WORD.findall(text)]
    if longest_ngram_run(words, 1) >= limits.word_repeats:
        return True
    if any(longest_ngram_run(words, n) >= limits.ngram_repeats for n in range(2, limits.max_ngram + 1)):
        return True
    if _char_loop(text, limits):
        return True
    return len(text) >= limits.min_ratio_chars and compression_ratio(text) > limits.compression_ratio


def _non_text_char(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"  # punctuation, symbols


def has_non_text(text: str, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Undecodable bytes (U+FFFD), control characters, or a run of punctuation/symbols."""
    if "\ufffd" in text or any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        return True
    run = 0
    for ch in text:
        run = run + 1 if _non_text_char(ch) else 0
        if run >= limits.non_text_run:
            return True
    return False


def echoes_prompt(raw: str, text: str, prompt: str, limits: Limits = DEFAULT_LIMITS) -> bool:
    """The answer holds a tag of its prompt (time tokens excepted: they are answers), or the
    prompt's plain-text part (an instruction or a question) when that is long enough to mean it."""
    prompt_tags = {t for t in _TAG.findall(prompt) if not _TIME_TAG.fullmatch(t)}
    if any(t in prompt_tags for t in _TAG.findall(raw)):
        return True
    plain = " ".join(_TAG.sub(" ", prompt).split()).lower()
    spoken = " ".join(text.split()).lower()
    pieces = [p.strip() for p in re.split(r"[?.!:\n]", plain) if len(p.strip()) >= limits.min_echo_chars]
    return any(p in spoken for p in pieces)


def detect(
    text: str,
    raw: str,
    prompt: str,
    generated_tokens: int | None = None,
    max_new_tokens: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> list[str]:
    """The :data:`FLAGS` that one generated answer raises, in :data:`FLAGS` order.

    ``text`` is the parsed answer, ``raw`` the generated text with tags, ``prompt`` what the
    model was asked; ``generated_tokens`` against ``max_new_tokens`` tells a cut-off answer.
    """
    found = set()
    if not text.strip():
        found.add("empty")
    # Tags count as words: a loop of tags (or time tokens) around a short text is still a loop.
    if raw and (is_repetitive(text, limits) or is_repetitive(_TAG.sub(lambda m: f" {m.group(0)} ", raw), limits)):
        found.add("repetition")
    if raw and echoes_prompt(raw, text, prompt, limits):
        found.add("echo")
    if generated_tokens is not None and max_new_tokens is not None and generated_tokens >= max_new_tokens:
        found.add("truncated")
    if has_non_text(text, limits):
        found.add("non_text")
    return [f for f in FLAGS if f in found]


def retryable(flags: list[str]) -> bool:
    return any(f in RETRYABLE for f in flags)


# ---- Counting, for reports -----------------------------------------------------------------


def count_flags(predictions: list[dict]) -> Counter:
    """flag -> number of predictions that carry it (predictions are report dicts with ``flags``)."""
    return Counter(f for p in predictions for f in p.get("flags") or [])


def summary(counts: Counter) -> str:
    """``"repetition 3, truncated 2"``; ``"none"`` when nothing was flagged."""
    return ", ".join(f"{f} {counts[f]}" for f in FLAGS if counts.get(f)) or "none"


def examples(predictions: list[dict], per_flag: int = 3) -> list[tuple[str, str, str]]:
    """Up to ``per_flag`` (flag, id, answer) of each flag, for the report's listing."""
    out: list[tuple[str, str, str]] = []
    seen: Counter[str] = Counter()
    for p in predictions:
        for f in p.get("flags") or []:
            if seen[f] < per_flag:
                seen[f] += 1
                out.append((f, p["id"], p.get("raw") or p.get("text") or ""))
    return sorted(out, key=lambda x: list(FLAGS).index(x[0]) if x[0] in FLAGS else len(FLAGS))
