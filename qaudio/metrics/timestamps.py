"""Word-timestamp accuracy: Qwen-Audio's average absolute shift (AAS) and boundary errors.

Reference: Qwen-Audio ``eval_audio/evaluate_srwt.py``, ``AverageShiftCalculator``
(QwenLM/Qwen-Audio). The reference and predicted word sequences are aligned by edit distance;
over the words the alignment marks *equal*, each contributes
|start_ref - start_hyp| + |end_ref - end_hyp|; AAS is the corpus sum of those shifts divided by
the corpus count of matched words (the anchor prints seconds; qaudio reports milliseconds).
Words are compared exactly, as in the anchor. The anchor also reports WER of the plain text,
with its ASR conventions (``qwen_audio`` profile of :mod:`qaudio.metrics.wer`).

A prediction with malformed time tokens is still scored with the times the parser recovers
and is counted in ``malformed_predictions`` (the anchor drops such outputs, which can flatter
AAS). Beyond the anchor: the median absolute boundary error over all matched start and end
boundaries, and the share of boundaries within 50 ms and 100 ms.

The alignment is rapidfuzz's Levenshtein alignment (the backend of jiwer); where several
alignments are optimal it may pick a different one than the anchor's ``edit_distance``
package, which can change which of two identical words is matched.
"""

from __future__ import annotations

import numpy as np
from rapidfuzz.distance import Levenshtein

from . import wer as wer_metric
from .base import MetricResult, library_versions
from .bootstrap import ratio
from ..tags import parse_timestamped

PROFILES = {"qwen_audio": "Qwen-Audio evaluate_srwt: AAS over edit-distance-matched words (in ms), WER with qwen_audio "
                          "conventions; plus median boundary error and shares within 50/100 ms"}
TOLERANCES_MS = (50, 100)

Words = list[tuple[str, float, float]]


def timed_words(value, what: str = "prediction") -> tuple[Words, list[str]]:
    """(words, problems) from time-token text (``<|0.00|>hi<|0.30|>``) or [[word, start_s, end_s], ...]."""
    if isinstance(value, str):
        parsed = parse_timestamped(value)
        return parsed.words, parsed.problems
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{what} words must be time-token text or [[word, start_s, end_s], ...], got {type(value).__name__}")
    words = []
    for i, item in enumerate(value):
        ok = (isinstance(item, (list, tuple)) and len(item) == 3 and isinstance(item[0], str)
              and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in item[1:]))
        if not ok:
            raise ValueError(f"{what} word {i} must be [word, start_s, end_s], got {item!r}")
        words.append((item[0], float(item[1]), float(item[2])))
    return words, []


def matched_boundaries(ref: Words, hyp: Words) -> np.ndarray:
    """(M, 2) absolute start and end errors in ms of the words the alignment marks equal."""
    errors = []
    for op in Levenshtein.opcodes([w for w, _, _ in ref], [w for w, _, _ in hyp]):
        if op.tag != "equal":
            continue
        for r, h in zip(ref[op.src_start:op.src_end], hyp[op.dest_start:op.dest_end]):
            errors.append((abs(r[1] - h[1]) * 1000, abs(r[2] - h[2]) * 1000))
    # Round away float noise so 0.35 - 0.30 counts as 50 ms, within a 50 ms tolerance.
    return np.round(np.asarray(errors, dtype=np.float64).reshape(-1, 2), 6)


def compute(predictions: list, references: list, profile: str, language: str = "en") -> MetricResult:
    """AAS (ms), boundary statistics and WER for timestamped transcripts."""
    refs, hyps, malformed = [], [], 0
    for i, (p, r) in enumerate(zip(predictions, references)):
        ref, problems = timed_words(r, "reference")
        if problems:
            raise ValueError(f"example {i}: malformed reference timestamps: {'; '.join(problems)}")
        hyp, problems = timed_words(p, "prediction")
        malformed += bool(problems)
        refs.append(ref)
        hyps.append(hyp)
    per_example = [matched_boundaries(r, h) for r, h in zip(refs, hyps)]  # each (M_i, 2)
    within = [[(e <= tol).sum() for tol in TOLERANCES_MS] for e in per_example]
    # (N, 5): shift sum (ms), matched words, boundaries within 50 ms, within 100 ms, boundaries
    stats = np.array([[e.sum(), len(e), *w, e.size] for e, w in zip(per_example, within)], dtype=np.float64)
    aggregates = {"aas_ms": ratio(0, 1, 1.0), **{f"within_{t}ms": ratio(2 + k, 4, 100.0) for k, t in enumerate(TOLERANCES_MS)}}
    all_errors = np.concatenate([e.ravel() for e in per_example])

    text = wer_metric.compute([" ".join(w for w, _, _ in h) for h in hyps], [" ".join(w for w, _, _ in r) for r in refs],
                              "qwen_audio", language)
    values, units, bootstrap, not_computed = {}, {}, {}, {}
    if stats[:, 1].sum() > 0:
        for name, agg in aggregates.items():
            values[name] = agg(stats)
            units[name] = "ms" if name == "aas_ms" else "%"
            bootstrap[name] = (stats, agg)
        values["median_boundary_error_ms"] = float(np.median(all_errors))
        units["median_boundary_error_ms"] = "ms"
    else:
        for name in (*aggregates, "median_boundary_error_ms"):
            not_computed[name] = "no predicted word matches a reference word, so no boundary can be compared"
    values["matched_words"] = int(stats[:, 1].sum())
    values["malformed_predictions"] = malformed
    units.update(matched_words="count", malformed_predictions="count")
    values[text.primary] = text.values[text.primary]
    units[text.primary] = "%"
    bootstrap[text.primary] = text.bootstrap[text.primary]
    return MetricResult(
        family="timestamps",
        profile=profile,
        language=text.language,
        n=len(refs),
        values=values,
        units=units,
        primary="aas_ms",
        higher_is_better=False,
        bootstrap=bootstrap,
        per_example={"shift_ms": stats[:, 0].tolist(), "matched_words": stats[:, 1].tolist()},
        not_computed=not_computed,
        notes=text.notes,
        versions=library_versions("rapidfuzz", "jiwer"),
    )
