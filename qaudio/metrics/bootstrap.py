"""Bootstrap confidence intervals that respect corpus-level metrics.

Reference: Koehn, "Statistical Significance Tests for Machine Translation Evaluation"
(EMNLP 2004), section 3: resample test sentences with replacement, recompute the *corpus*
metric on each resample, and read the interval off the percentiles. For WER the corpus value
is sum(edits) / sum(reference words) and for BLEU it is computed from summed n-gram counts,
so each example contributes a row of sufficient statistics and the aggregate function
recomputes the corpus statistic from the resampled rows (as sacrebleu's own
``--paired-bs`` does with ``BLEU._extract_corpus_statistics``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_ci(
    per_example_stats: np.ndarray | list,
    aggregate_fn: Callable[[np.ndarray], float],
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``aggregate_fn`` over resampled examples.

    ``per_example_stats`` is (N, K): one row of sufficient statistics per example (a 1-D
    array is taken as K = 1). ``aggregate_fn`` maps a (N, K) array of resampled rows to the
    corpus value. Resamples whose aggregate is NaN (e.g. no reference words drawn) are
    ignored. Deterministic for a given ``seed``.
    """
    stats = np.asarray(per_example_stats, dtype=np.float64)
    if stats.ndim == 1:
        stats = stats[:, None]  # (N,) -> (N, 1)
    if stats.ndim != 2 or stats.shape[0] == 0:
        raise ValueError(f"per_example_stats must be a non-empty (N, K) array, got shape {stats.shape}")
    if n < 1:
        raise ValueError(f"the number of bootstrap resamples must be >= 1, got {n}")
    if not 0 < level < 1:
        raise ValueError(f"the confidence level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    num = stats.shape[0]
    values = np.empty(n)
    for i in range(n):
        rows = rng.integers(0, num, size=num)  # (N,) indices drawn with replacement
        values[i] = aggregate_fn(stats[rows])  # (N, K) -> corpus value
    if np.all(np.isnan(values)):
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def ratio(numerator: int = 0, denominator: int = 1, scale: float = 100.0) -> Callable[[np.ndarray], float]:
    """Aggregate ``scale * sum(col numerator) / sum(col denominator)``; NaN when the sum is 0.

    The corpus form of WER, accuracy over a subset, average shift and other ratio metrics.
    """

    def aggregate(stats: np.ndarray) -> float:
        total = stats[:, denominator].sum()
        return float(scale * stats[:, numerator].sum() / total) if total else float("nan")

    return aggregate


def mean(column: int = 0, scale: float = 1.0) -> Callable[[np.ndarray], float]:
    """Aggregate ``scale * mean(col)``: for metrics whose corpus value is a per-example mean."""

    def aggregate(stats: np.ndarray) -> float:
        return float(scale * stats[:, column].mean())

    return aggregate
