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
  ``remove_sp`` as above, then per language: Cantonese converted to simplified characters
  (``zhconv``) then ``BasicTextNormalizer``; English ``EnglishTextNormalizer`` then
  ``BasicTextNormalizer``; Chinese ``cn_tn.TextNorm`` only (numbers spelled out, punctuation
  to spaces, bracketed text kept; :mod:`.chinese`); others ``BasicTextNormalizer``. Then
  ``EvaluationTokenizer(tokenizer_type="none", lowercase=True, punctuation_removal=True)``:
  tokens made only of punctuation are dropped. Chinese and Cantonese are scored per character.
- ``whisper``: OpenAI's normalisers alone (Radford et al., arXiv:2212.04356, appendix C):
  ``EnglishTextNormalizer`` for English, ``BasicTextNormalizer`` for other languages,
  applied to the text as given, then words split on white space (characters for Chinese,
  Cantonese and Japanese).

The Whisper normalisers are OpenAI's code as transformers ports it, with OpenAI's spelling
map (:mod:`.normalizers`); the PyPI ``whisper-normalizer`` package's own normaliser adds
rules (``cause`` -> ``because``, ``dunno``) and is not used. ``tests/data/anchor_parity.json``
holds the anchors' own outputs on hundreds of cases, which every profile reproduces.

Chinese is scored per character (CER) in every profile, Cantonese in ``qwen2_audio`` and
``whisper`` (Qwen-Audio splits only ``zh``), and Japanese, which no anchor evaluates, per
character everywhere as qaudio's own choice. Edit operations are counted by jiwer
(Levenshtein alignment with unit costs, the same distance as ``editdistance.eval`` in the
anchors).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import jiwer
import numpy as np

from . import normalizers
from .analysis import by_duration
from .base import MetricFamily, MetricResult, first_text, language_code, library_versions
from .bootstrap import ratio

PROFILES = {
    "qwen_audio": "Qwen-Audio evaluate_asr: tags removed, lower-cased, punctuation kept; zh per character",
    "qwen2_audio": "Qwen2-Audio evaluate_asr: OpenAI English+basic normalisers, cn_tn for zh, zhconv for yue, "
    "punctuation tokens dropped; zh and yue per character",
    "whisper": "OpenAI Whisper normalisers: English for en, basic for others; zh, yue, ja per character",
}
# Anchor file each profile follows (shown in reports and the README's metric table).
ANCHORS = {
    "qwen_audio": "QwenLM/Qwen-Audio eval_audio/evaluate_asr.py (remove_sp, compute_wer)",
    "qwen2_audio": "QwenLM/Qwen2-Audio eval_audio/evaluate_asr.py (remove_sp, compute_wer) with cn_tn.py, whisper_normalizer/",
    "whisper": "openai/whisper whisper/normalizers/ (EnglishTextNormalizer, BasicTextNormalizer)",
}
# Languages scored per character (no spaces between words), by profile.
CHARACTER_LANGUAGES = {"qwen_audio": ("zh", "ja"), "qwen2_audio": ("zh", "yue", "ja"), "whisper": ("zh", "yue", "ja")}

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


def _is_punctuation(token: str) -> bool:
    """EvaluationTokenizer.remove_punctuation's test: every character in a Unicode P category."""
    return all(unicodedata.category(c)[0] == "P" for c in token)


def _evaluation_tokenizer(text: str, punctuation_removal: bool) -> list[str]:
    """The Qwen scripts' EvaluationTokenizer (sacrebleu's "none" tokenizer, lower-cased), split."""
    if punctuation_removal:  # split on single spaces, drop punctuation-only (and empty) tokens
        text = " ".join(t for t in text.split(" ") if not _is_punctuation(t))
    return text.lower().split()


# Normalisation steps by name (the names appear in results' provenance).
STEPS: dict[str, Callable[[str, str], str]] = {
    "qwen_remove_sp": remove_sp,
    "whisper_english": lambda text, language: normalizers.whisper_english()(text),
    "whisper_basic": lambda text, language: normalizers.whisper_basic()(text),
    "chinese_tn": lambda text, language: normalizers.chinese_tn(text),
    "zhconv": lambda text, language: normalizers.to_simplified(text),
}
# (profile, language: en, zh, yue or "other") -> the steps applied, in order
PIPELINES: dict[tuple[str, str], tuple[str, ...]] = {
    **{("qwen_audio", k): ("qwen_remove_sp",) for k in ("en", "zh", "yue", "other")},
    ("qwen2_audio", "en"): ("qwen_remove_sp", "whisper_english", "whisper_basic"),
    ("qwen2_audio", "zh"): ("qwen_remove_sp", "chinese_tn"),
    ("qwen2_audio", "yue"): ("qwen_remove_sp", "zhconv", "whisper_basic"),
    ("qwen2_audio", "other"): ("qwen_remove_sp", "whisper_basic"),
    ("whisper", "en"): ("whisper_english",),
    **{("whisper", k): ("whisper_basic",) for k in ("zh", "yue", "other")},
}
# profile -> how normalised text becomes words
WORDS: dict[str, Callable[[str], list[str]]] = {
    "qwen_audio": lambda text: _evaluation_tokenizer(text, punctuation_removal=False),
    "qwen2_audio": lambda text: _evaluation_tokenizer(text, punctuation_removal=True),
    "whisper": str.split,
}


def pipeline(profile: str, language: str) -> tuple[str, ...]:
    """The names of the normalisation steps ``profile`` applies to text in ``language``."""
    return PIPELINES[profile, language if language in ("en", "zh", "yue") else "other"]


def tokens(text: str, profile: str, language: str = "en") -> list[str]:
    """The tokens that are compared: words, or characters for Chinese, Cantonese and Japanese."""
    if profile not in PROFILES:
        raise ValueError(f"unknown wer profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    if not isinstance(text, str):
        raise ValueError(f"expected a transcript string, got {type(text).__name__}: {text!r}")
    language = language_code(language)
    for step in pipeline(profile, language):
        text = STEPS[step](text, language)
    items = WORDS[profile](text)
    if language in CHARACTER_LANGUAGES[profile]:
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
    name = "cer" if language in CHARACTER_LANGUAGES[profile] else "wer"
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
    units = {
        name: "%",
        "substitutions": "count",
        "deletions": "count",
        "insertions": "count",
        f"reference_{unit}": "count",
    }
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
        versions=library_versions("jiwer", "rapidfuzz", "transformers", "whisper-normalizer", "zhconv"),
        provenance={
            "anchor": ANCHORS[profile],
            "normalizer": normalizers.provenance(*pipeline(profile, language)),
            "tokenizer": f"white space, {'characters' if name == 'cer' else 'words'}; edit distance by jiwer",
        },
    )


FAMILY = MetricFamily(
    "wer",
    compute,
    PROFILES,
    "word error rate (character error rate for zh, yue, ja)",
    reference=lambda ex: first_text(ex.target),
    headline=("wer", "cer"),
    lower_is_better=frozenset({"wer", "cer"}),
    by_language=True,
    analyses={"by_duration": by_duration},
)
