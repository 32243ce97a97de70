"""Analyses of one benchmark that any family with per-example statistics can draw.

``by_duration``: the primary metric per clip-duration bin, recomputed from the same
per-example sufficient statistics as the bootstrap intervals (so a bin's WER is the corpus WER
of its clips, not a mean of per-clip rates). A family lists it in ``MetricFamily.analyses``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import MetricResult

DURATION_BINS = 4  # clip-duration bins (quantiles) of the error-rate-by-duration plot


def by_duration(examples: Sequence[Any], predictions: dict[str, list], results: dict[str, MetricResult]) -> dict | None:
    """The primary metric per clip-duration bin, from the same per-example statistics as the CIs."""
    durations = np.array([ex.duration for ex in examples])  # (N,)
    edges = np.unique(np.quantile(durations, np.linspace(0, 1, min(DURATION_BINS, len(examples)) + 1)))
    if len(edges) < 2:
        edges = np.array([durations.min(), durations.max()])
    bins = np.clip(np.searchsorted(edges, durations, side="right") - 1, 0, len(edges) - 2)  # (N,)
    values, metric, unit = {}, None, None
    for system, result in results.items():
        if result.primary not in result.bootstrap:
            continue
        stats, aggregate = result.bootstrap[result.primary]  # (N, K), corpus statistic
        per_bin = [aggregate(stats[bins == b]) if (bins == b).any() else math.nan for b in range(len(edges) - 1)]
        values[system] = [None if math.isnan(v) else float(v) for v in per_bin]
        metric, unit = result.primary, result.units.get(result.primary)
    if not values:
        return None
    return {
        "metric": metric,
        "unit": unit,
        "edges": edges.tolist(),
        "counts": [int((bins == b).sum()) for b in range(len(edges) - 1)],
        "values": values,
    }
