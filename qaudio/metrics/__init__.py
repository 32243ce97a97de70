"""Metrics with the anchors' exact conventions, behind named profiles.

One :class:`MetricFamily` per family, declared in the family's module and registered in
:data:`METRICS` (a task spec names its family in ``Task.metric``). The family carries what
evaluation, ``qaudio score`` and the report need: where the reference and the prediction come
from, the headline metrics, which metrics are lower-is-better, the chance baseline and the
report's analyses. Each entry is called the same way::

    result = METRICS["wer"](predictions, references, profile="qwen2_audio", language="en")
    result.values["wer"], result.ci(), result.to_dict(bootstrap=1000)

and returns a :class:`MetricResult` that records the profile, the library versions, the
per-example statistics for bootstrap intervals (:func:`bootstrap_ci`) and, for anything that
could not be computed (SPIDEr without SPICE), the reason and the fix instead of a number.

Family modules: :mod:`.wer`, :mod:`.bleu`, :mod:`.caption` (jars: :mod:`.caption_jars`),
:mod:`.classification` (accuracy, aqa), :mod:`.note`, :mod:`.timestamps`. Heavy libraries
(aac-metrics, which imports torch) are imported only when their family runs.
"""

from __future__ import annotations

from . import bleu, caption, classification, note, timestamps, wer
from .base import MetricFamily, MetricResult, library_versions
from .bootstrap import bootstrap_ci
from .classification import normalize_label

# One entry per family, each declared in its own module (adding a family: one module, one line here).
METRICS: dict[str, MetricFamily] = {
    f.name: f
    for f in (
        wer.FAMILY,
        bleu.FAMILY,
        caption.FAMILY,
        classification.AQA,
        classification.ACCURACY,
        timestamps.FAMILY,
        note.FAMILY,
    )
}


def get_metric(name: str) -> MetricFamily:
    """The metric family called ``name`` (as in ``Task.metric``)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric family {name!r}; valid families: {', '.join(METRICS)}")
    return METRICS[name]


__all__ = [
    "METRICS",
    "MetricFamily",
    "MetricResult",
    "bootstrap_ci",
    "get_metric",
    "library_versions",
    "normalize_label",
]
