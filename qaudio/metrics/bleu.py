"""Corpus BLEU for speech translation, as the Qwen anchors compute it.

Reference: Qwen-Audio and Qwen2-Audio ``eval_audio/evaluate_st.py`` (QwenLM/Qwen-Audio,
QwenLM/Qwen2-Audio): ``sacrebleu.corpus_bleu(hyps, [refs], tokenize=...)`` with the
tokenizer chosen by the *target* language: ``ja-mecab`` for Japanese, ``zh`` for Chinese,
``13a`` otherwise; case-sensitive (sacrebleu's default), default smoothing. Post, "A Call for
Clarity in Reporting BLEU Scores" (WMT 2018) explains why the signature is reported.

Profiles differ only in what reaches sacrebleu (the anchors' decode step decides it):

- ``qwen_audio``: Qwen-Audio decodes with ``skip_special_tokens=False`` and ``.strip()``s:
  tags stay in the prediction and count as text; references as written.
- ``qwen2_audio``: Qwen2-Audio decodes with ``skip_special_tokens=True``: tags dropped from
  the prediction, nothing stripped; references as written.
- ``sacrebleu`` (qaudio's own): tags removed from predictions and references.

The anchors call ``sacrebleu.corpus_bleu``; qaudio calls the same sacrebleu ``BLEU`` object
(the installed version, recorded in the result).
Per-example sufficient statistics (hypothesis and reference lengths, n-gram matches and
totals) come from sacrebleu itself, so a bootstrap resample recomputes corpus BLEU exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from ..tags import strip_tags
from .base import MetricFamily, MetricResult, language_code, library_versions

PROFILES = {
    "sacrebleu": "qaudio: sacrebleu corpus BLEU, case-sensitive; tokenizer 13a, zh for Chinese, ja-mecab for Japanese; "
    "tags removed from both sides",
    "qwen_audio": "Qwen-Audio evaluate_st: prediction stripped with its tags kept, reference as written",
    "qwen2_audio": "Qwen2-Audio evaluate_st: prediction without tags (skip_special_tokens), reference as written",
}
ANCHORS = {
    "sacrebleu": "qaudio's own definition (after the Qwen evaluate_st.py scripts)",
    "qwen_audio": "QwenLM/Qwen-Audio eval_audio/evaluate_st.py (decode(skip_special_tokens=False).strip(), "
    "sacrebleu.corpus_bleu)",
    "qwen2_audio": "QwenLM/Qwen2-Audio eval_audio/evaluate_st.py (batch_decode(skip_special_tokens=True), "
    "sacrebleu.corpus_bleu)",
}
_TAG = re.compile(r"<\|[^|]*?\|>")
# profile -> (prediction transform, reference transform)
TRANSFORMS: dict[str, tuple[Callable[[str], str], Callable[[str], str]]] = {  # profile -> (hypothesis, reference)
    "sacrebleu": (strip_tags, strip_tags),
    "qwen_audio": (str.strip, lambda r: r),
    "qwen2_audio": (lambda p: _TAG.sub("", p), lambda r: r),
}
TOKENIZERS = {"zh": "zh", "ja": "ja-mecab"}  # target language -> sacrebleu tokenizer; others: 13a
DEFAULT_TOKENIZER = "13a"


def tokenizer_for(language: str) -> str:
    """The sacrebleu tokenizer name for a target language, checking that it can run here."""
    name = TOKENIZERS.get(language_code(language), DEFAULT_TOKENIZER)
    if name == "ja-mecab":
        _check_mecab()
    return name


def _check_mecab() -> None:
    try:
        import ipadic  # noqa: F401
        import MeCab  # noqa: F401
    except ImportError as e:
        raise ValueError(
            f"BLEU for Japanese uses sacrebleu's ja-mecab tokenizer, which needs the packages mecab-python3 and "
            f"ipadic ({e.name} is missing): pip install 'qaudio[ja]' (or pip install 'sacrebleu[ja]')"
        ) from None


def _reference_streams(references: list, transform: Callable[[str], str] = strip_tags) -> list[list[str]]:
    """sacrebleu's layout: one stream per reference position; every example needs the same count."""
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    counts = {len(r) for r in refs}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(
            f"BLEU needs the same number (>= 1) of references for every example, got counts {sorted(counts)}"
        )
    for i, r in enumerate(refs):
        if not all(isinstance(x, str) for x in r):
            raise ValueError(f"example {i}: references must be strings, got {r!r}")
    return [[transform(r[k]) for r in refs] for k in range(counts.pop())]


def compute(predictions: list[str], references: list, profile: str, language: str = "en") -> MetricResult:
    """Corpus BLEU (0-100) with the target language's tokenizer."""
    from sacrebleu.metrics import BLEU

    for i, p in enumerate(predictions):
        if not isinstance(p, str):
            raise ValueError(f"example {i}: the prediction must be a string, got {type(p).__name__}")
    tokenize = tokenizer_for(language)
    hyp_transform, ref_transform = TRANSFORMS[profile]
    hyps = [hyp_transform(p) for p in predictions]
    streams = _reference_streams(references, ref_transform)
    bleu = BLEU(tokenize=tokenize)
    # Rows: [hyp_len, ref_len, match_1..4, total_1..4] per example, sacrebleu's own statistics;
    # corpus_score() is exactly these two calls, so the corpus value and the bootstrap agree.
    rows = bleu._extract_corpus_statistics(hyps, streams)
    corpus = bleu._aggregate_and_compute(rows)
    stats = np.asarray(rows, dtype=np.int64)  # (N, 10)

    def aggregate(rows: np.ndarray) -> float:
        return float(bleu._compute_score_from_stats(rows.sum(axis=0).astype(int).tolist()).score)

    values = {
        "bleu": float(corpus.score),
        **{f"precision_{n + 1}": float(p) for n, p in enumerate(corpus.precisions)},
        "brevity_penalty": float(corpus.bp),
        "hypothesis_length": int(corpus.sys_len),
        "reference_length": int(corpus.ref_len),
    }
    units = {
        "bleu": "BLEU",
        **{f"precision_{n}": "%" for n in range(1, 5)},
        "brevity_penalty": "ratio",
        "hypothesis_length": "tokens",
        "reference_length": "tokens",
    }
    return MetricResult(
        family="bleu",
        profile=profile,
        language=language_code(language),
        n=len(predictions),
        values=values,
        units=units,
        primary="bleu",
        higher_is_better=True,
        bootstrap={"bleu": (stats, aggregate)},
        details={"signature": str(bleu.get_signature()), "tokenizer": tokenize},
        versions=library_versions("sacrebleu"),
        provenance={
            "anchor": ANCHORS[profile],
            "tokenizer": f"sacrebleu {tokenize}",
            "signature": str(bleu.get_signature()),
        },
    )


FAMILY = MetricFamily(
    "bleu",
    compute,
    PROFILES,
    "sacrebleu corpus BLEU, tokenizer by target language",
    reference=lambda ex: ex.target,  # a list means several reference translations
    headline=("bleu",),
    by_language=True,
    multi_reference=True,
)
