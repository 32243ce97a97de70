"""Word (and character) error rate under the anchors' exact text conventions.

References, followed line by line:

- ``qwen_audio``: Qwen-Audio ``eval_audio/evaluate_asr.py`` (QwenLM/Qwen-Audio).
  ``remove_sp`` replaces every ``<|...|>`` tag by a space, folds white space, drops the space
  before ``!,.?;:`` and strips the left; Chinese loses all white space. ``compute_wer`` then
  applies ``EvaluationTokenizer(tokenizer_type="none", lowercase=True,
  punctuation_removal=False)``, splits on white space, splits Chinese into characters, and
  returns sum(edit distance) / sum(reference tokens) over the corpus. With the sacrebleu
  1.5.1 that ``eval_audio/EVALUATION.md`` pins, the ``none`` tokenizer is the identity, so
  punctuation stays attached: ``world.`` and ``world`` differ. (Forks that hard-code
  sacrebleu's ``13a`` tokenizer split punctuation off and score differently.)
- ``qwen2_audio``: Qwen2-Audio ``eval_audio/evaluate_asr.py`` (QwenLM/Qwen2-Audio).
  ``remove_sp`` as above, then for English Whisper's ``EnglishTextNormalizer`` followed by
  ``BasicTextNormalizer``; for other languages ``BasicTextNormalizer``; the tokenizer drops
  tokens made only of punctuation. For Chinese the anchor uses ``cn_tn.TextNorm`` (SpeechIO's
  Chinese normaliser, not on PyPI), which also removes punctuation and in addition spells
  numbers out in Chinese characters; here ``BasicTextNormalizer`` stands in for it and the
  result says so in its notes.
- ``whisper``: Radford et al., "Robust Speech Recognition via Large-Scale Weak Supervision"
  (arXiv:2212.04356), appendix C: ``EnglishTextNormalizer`` alone for English,
  ``BasicTextNormalizer`` for other languages (the normalisers ship in PyPI
  ``whisper-normalizer``, with the English spelling map).

In every profile Chinese and Japanese are scored per character (CER), since they are written
without spaces between words; the Qwen anchors score Chinese this way and evaluate no
Japanese ASR. Edit operations are counted by jiwer (Levenshtein alignment with unit costs,
the same distance as ``editdistance.eval`` in the anchors).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import jiwer
import numpy as np

from .base import MetricResult, language_code, library_versions
from .bootstrap import ratio

PROFILES = {
    "qwen_audio": "Qwen-Audio evaluate_asr: tags removed, lower-cased, punctuation kept; zh per character",
    "qwen2_audio": "Qwen2-Audio evaluate_asr: Whisper English normaliser then basic normaliser; zh per character",
    "whisper": "Whisper: English normaliser only (basic normaliser for other languages); zh per character",
}
CHARACTER_LANGUAGES = ("zh", "ja")  # scored per character: no spaces between words

_TAG = re.compile(r"<\|.*?\|>")
_QWEN_PUNCS = "!,.?;:"  # PUNCS in the Qwen eval scripts
_SPACE_BEFORE_PUNC = re.compile(f" ?([{re.escape(_QWEN_PUNCS)}])")


def remove_sp(text: str, language: str) -> str:
    """Qwen's ``remove_sp``: drop tags, fold spaces, no space before punctuation (zh: none at all)."""
    text = _TAG.sub(" ", text)
    text = re.sub(r"\s+", " ", text)
    text = _SPACE_BEFORE_PUNC.sub(r"\1", text)
    text = text.lstrip(" ")
    if language == "zh":
        text = re.sub(r"\s+", "", text)
    return text


@lru_cache(maxsize=None)
def _normalizers():
    # Imported on first use: the English normaliser loads its spelling map from JSON.
    from whisper_normalizer.basic import BasicTextNormalizer
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer(), BasicTextNormalizer()


def _is_punctuation(token: str) -> bool:
    """EvaluationTokenizer.remove_punctuation's test: every character in a Unicode P category."""
    return all(unicodedata.category(c)[0] == "P" for c in token)


def tokens(text: str, profile: str, language: str = "en") -> list[str]:
    """The tokens that are compared: words, or characters for Chinese and Japanese."""
    if profile not in PROFILES:
        raise ValueError(f"unknown wer profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    if not isinstance(text, str):
        raise ValueError(f"expected a transcript string, got {type(text).__name__}: {text!r}")
    language = language_code(language)
    if profile == "whisper":
        english, basic = _normalizers()
        text = _TAG.sub(" ", text)  # qaudio outputs may carry tags; Whisper's never do
        text = english(text) if language == "en" else basic(text)
        items = text.split()
    else:
        text = remove_sp(text, language)
        if profile == "qwen2_audio":
            english, basic = _normalizers()
            if language == "en":
                text = english(text)
            text = basic(text)
        items = text.lower().split()
        if profile == "qwen2_audio":
            items = [t for t in items if not _is_punctuation(t)]
    if language in CHARACTER_LANGUAGES:
        items = list("".join(items))
    return items


def edit_counts(ref_tokens: list[list[str]], hyp_tokens: list[list[str]]) -> np.ndarray:
    """Per-example (substitutions, deletions, insertions, reference tokens) by jiwer: (N, 4)."""
    # jiwer splits on white space; no token contains any, so the tokens pass through intact.
    out = jiwer.process_words([" ".join(r) for r in ref_tokens], [" ".join(h) for h in hyp_tokens])
    counts = np.zeros((len(ref_tokens), 4), dtype=np.int64)
    for i, chunks in enumerate(out.alignments):
        for c in chunks:
            if c.type == "substitute":
                counts[i, 0] += c.ref_end_idx - c.ref_start_idx
            elif c.type == "delete":
                counts[i, 1] += c.ref_end_idx - c.ref_start_idx
            elif c.type == "insert":
                counts[i, 2] += c.hyp_end_idx - c.hyp_start_idx
        counts[i, 3] = len(ref_tokens[i])
    return counts


def compute(predictions: list[str], references: list[str], profile: str, language: str = "en") -> MetricResult:
    """Corpus WER (CER for zh/ja) = sum of edits / sum of reference tokens, in percent."""
    language = language_code(language)
    refs = [tokens(r, profile, language) for r in references]
    hyps = [tokens(p, profile, language) for p in predictions]
    counts = edit_counts(refs, hyps)  # (N, 4): S, D, I, reference tokens
    name = "cer" if language in CHARACTER_LANGUAGES else "wer"
    unit = "characters" if name == "cer" else "words"
    total_ref = int(counts[:, 3].sum())
    if total_ref == 0:
        raise ValueError(f"every reference is empty after the {profile} normalisation: {name.upper()} is undefined")
    stats = np.stack([counts[:, :3].sum(axis=1), counts[:, 3]], axis=1)  # (N, 2): edits, reference tokens
    aggregate = ratio(0, 1, 100.0)
    values = {
        name: aggregate(stats),
        "substitutions": int(counts[:, 0].sum()),
        "deletions": int(counts[:, 1].sum()),
        "insertions": int(counts[:, 2].sum()),
        f"reference_{unit}": total_ref,
    }
    units = {name: "%", "substitutions": "count", "deletions": "count", "insertions": "count", f"reference_{unit}": "count"}
    notes = []
    if profile == "qwen2_audio" and language == "zh":
        notes.append("Qwen2-Audio normalises Chinese with cn_tn.TextNorm (not on PyPI), which also spells numbers "
                     "out in Chinese characters; Whisper's BasicTextNormalizer stands in for it here, so texts with "
                     "Arabic numerals can score differently from the anchor.")
    return MetricResult(
        family="wer",
        profile=profile,
        language=language,
        n=len(predictions),
        values=values,
        units=units,
        primary=name,
        higher_is_better=False,
        bootstrap={name: (stats, aggregate)},
        per_example={"edits": stats[:, 0].tolist(), f"reference_{unit}": stats[:, 1].tolist()},
        details={"tokens": unit},
        notes=notes,
        versions=library_versions("jiwer", "rapidfuzz", "whisper-normalizer"),
    )
