"""Metrics with the anchors' exact conventions, behind named profiles.

One entry per metric family, registered in :data:`METRICS` (a task spec names its family in
``Task.metric``). Each entry is called the same way::

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

METRICS: dict[str, MetricFamily] = {
    f.name: f
    for f in (
        MetricFamily("wer", wer.compute, wer.PROFILES, "word error rate (character error rate for zh, yue, ja)"),
        MetricFamily("bleu", bleu.compute, bleu.PROFILES, "sacrebleu corpus BLEU, tokenizer by target language"),
        MetricFamily("caption", caption.compute, caption.PROFILES,
                     "BLEU-1..4, METEOR, ROUGE-L, CIDEr-D; SPICE and SPIDEr when SPICE can run"),
        MetricFamily("aqa", classification.compute_aqa, classification.AQA_PROFILES,
                     "audio QA accuracy and yes/no accuracy"),
        MetricFamily("accuracy", classification.compute_accuracy, classification.ACCURACY_PROFILES,
                     "classification accuracy, unweighted accuracy and confusion matrix"),
        MetricFamily("timestamps", timestamps.compute, timestamps.PROFILES,
                     "word-timestamp AAS (ms), boundary errors, WER"),
        MetricFamily("note", note.compute, note.PROFILES, "music note exact, instrument, pitch and chroma accuracy"),
    )
}


def get_metric(name: str) -> MetricFamily:
    """The metric family called ``name`` (as in ``Task.metric``)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric family {name!r}; valid families: {', '.join(METRICS)}")
    return METRICS[name]


__all__ = ["METRICS", "MetricFamily", "MetricResult", "bootstrap_ci", "get_metric", "library_versions", "normalize_label"]
