"""Classification accuracy with a confusion matrix, and audio-QA accuracy with its yes/no split.

References: Qwen-Audio ``eval_audio/evaluate_emotion.py``, ``evaluate_scene.py`` and
``evaluate_vocal_sound.py`` score ``sklearn.metrics.accuracy_score(refs, hyps)`` on the
decoded strings; ``evaluate_aqa.py`` does the same and adds "bi_ACC", the accuracy over the
examples whose reference, lower-cased, is "yes" or "no" (QwenLM/Qwen-Audio).

Profiles (anchor-named ones compare strings exactly as the anchor's code does; its decode
step is part of the convention, since it decides what the compared string is):
- ``qwen_audio``: Qwen-Audio decodes with special tokens kept and ``.strip()``s the
  prediction; the reference is compared as written (a trailing space makes it wrong).
- ``qwen2_audio``: Qwen2-Audio ``evaluate_emotion.py`` / ``evaluate_vocal_sound.py``: decoded
  with ``skip_special_tokens=True`` (tags dropped) and ``.lstrip()``ped; reference as written.
- ``normalized`` (qaudio's own): both sides pass through :func:`normalize_label`, the same
  normalisation the task parser applies to generated labels (tags removed, white space and
  final full stops stripped, lower-cased), so "Happy." counts as "happy".
- ``exact`` (qaudio's own): strings stripped of surrounding white space on both sides.

A corpus's own label names are accepted through the task's ``label_aliases`` (MELD's ``joy``
is the ser task's ``happy``): in ``normalized`` both sides are mapped before comparing; in
the other profiles the comparison stays exact, and the normalised, mapped label only places
an example in the label set, the per-class recalls and the confusion matrix.

Constrained decoding over a task's label set is the decoder's side; here a prediction outside
the label set is simply wrong and is counted in ``out_of_set``. Unweighted accuracy (the mean
of per-class recalls, "UA" in emotion recognition) is reported beside accuracy.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from ..tags import parse_label
from .base import MetricFamily, MetricResult, first_text, library_versions
from .bootstrap import mean, ratio

ACCURACY_PROFILES = {
    "normalized": "qaudio: exact match after normalisation (tags removed, stripped, final '.' dropped, lower-cased)",
    "qwen_audio": "Qwen-Audio evaluate_emotion/scene/vocal_sound: prediction stripped, tags kept; reference as written",
    "qwen2_audio": "Qwen2-Audio evaluate_emotion/vocal_sound: prediction without tags, left-stripped; reference as written",
    "exact": "qaudio: exact string match after stripping surrounding white space on both sides",
}
AQA_PROFILES = {
    "normalized": "qaudio: accuracy and yes/no accuracy after label normalisation",
    "qwen_audio": "Qwen-Audio evaluate_aqa: prediction stripped, reference as written, exact match; yes/no subset "
    "where reference.lower() is yes or no",
}
ANCHORS = {
    "qwen_audio": "QwenLM/Qwen-Audio eval_audio/evaluate_emotion.py, evaluate_scene.py, evaluate_vocal_sound.py, "
    "evaluate_aqa.py (decode(skip_special_tokens=False).strip(), sklearn accuracy_score)",
    "qwen2_audio": "QwenLM/Qwen2-Audio eval_audio/evaluate_emotion.py, evaluate_vocal_sound.py "
    "(batch_decode(skip_special_tokens=True), response.lstrip(), sklearn accuracy_score)",
    "normalized": "qaudio's own definition (qaudio.tags.parse_label on both sides)",
    "exact": "qaudio's own definition (str.strip() on both sides)",
}
_TAG = re.compile(r"<\|[^|]*?\|>")
# profile -> (prediction transform, reference transform)
TRANSFORMS: dict[str, tuple[Callable[[str], str], Callable[[str], str]]] = {
    "qwen_audio": (str.strip, lambda r: r),
    "qwen2_audio": (lambda p: _TAG.sub("", p).lstrip(), lambda r: r),
    "exact": (str.strip, str.strip),
}
OTHER = "(other)"  # confusion-matrix column for predictions outside the label set
YES_NO = ("yes", "no")


def normalize_label(text: str) -> str:
    """The label a generated or reference string stands for (one rule for parser and metric)."""
    return parse_label(text)[0]


def _labels(texts: list, what: str, profile: str, aliases: dict[str, str] | None = None) -> list[str]:
    """The compared strings: the profile's transform (``normalized``: then the aliases)."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"example {i}: the {what} must be a string, got {type(t).__name__}: {t!r}")
    if profile == "normalized":
        return [canonical(normalize_label(t), aliases) for t in texts]
    transform = TRANSFORMS[profile][0 if what == "prediction" else 1]
    return [transform(t) for t in texts]


def canonical(label: str, aliases: dict[str, str] | None) -> str:
    """The task's name of a label (``joy`` -> ``happy`` for MELD), matching aliases after normalisation."""
    if not aliases:
        return label
    return aliases.get(label, aliases.get(normalize_label(label), label))


def confusion(refs: list[str], hyps: list[str], labels: list[str]) -> dict:
    """Counts with rows = reference label, columns = predicted label (+ OTHER if needed)."""
    columns = list(labels) + ([OTHER] if any(h not in labels for h in hyps) else [])
    index = {label: i for i, label in enumerate(columns)}
    matrix = np.zeros((len(labels), len(columns)), dtype=np.int64)
    for r, h in zip(refs, hyps):
        matrix[index[r], index.get(h, index.get(OTHER, -1))] += 1
    return {"labels": list(labels), "columns": columns, "matrix": matrix.tolist()}


def compute_accuracy(
    predictions: list[str],
    references: list[str],
    profile: str,
    language: str = "en",
    labels: list[str] | tuple[str, ...] | None = None,
    aliases: dict[str, str] | None = None,
) -> MetricResult:
    """Accuracy and unweighted accuracy (%) with a confusion matrix over ``labels``.

    ``labels``: the task's label set, in the order the matrix should show; default: the
    reference labels seen, sorted. ``aliases``: a corpus's own label names -> the task's
    (the task's ``label_aliases``). A reference outside ``labels`` (after aliases) is an error.
    """
    refs = _labels(references, "reference", profile, aliases)
    hyps = _labels(predictions, "prediction", profile, aliases)
    correct = np.array([r == h for r, h in zip(refs, hyps)], dtype=np.float64)  # (N,) as the profile compares
    # The label each side stands for, for the label set, per-class recall and the matrix.
    refs = [canonical(normalize_label(r), aliases) for r in refs]
    hyps = [canonical(normalize_label(h), aliases) for h in hyps]
    if labels:
        labels = [canonical(normalize_label(lab), aliases) for lab in labels]
        unknown = sorted({r for r in refs if r not in labels})
        if unknown:
            known = ", ".join(labels) + (f"; corpus names accepted: {', '.join(aliases)}" if aliases else "")
            raise ValueError(f"reference label(s) {', '.join(map(repr, unknown))} are not in the label set ({known})")
    else:
        labels = sorted(set(refs))
    recalls = [correct[[r == lab for r in refs]].mean() for lab in labels if lab in refs]
    out_of_set = sum(h not in labels for h in hyps)
    aggregate = mean(0, 100.0)
    return MetricResult(
        family="accuracy",
        profile=profile,
        language=None,
        n=len(refs),
        values={
            "accuracy": aggregate(correct[:, None]),
            "unweighted_accuracy": 100.0 * float(np.mean(recalls)),
            "out_of_set": out_of_set,
        },
        units={"accuracy": "%", "unweighted_accuracy": "%", "out_of_set": "count"},
        primary="accuracy",
        higher_is_better=True,
        bootstrap={"accuracy": (correct[:, None], aggregate)},
        per_example={"correct": correct.tolist()},
        details={"confusion": confusion(refs, hyps, labels)},
        versions=library_versions("numpy"),
        provenance={"anchor": ANCHORS[profile], "tokenizer": "whole string", "label_aliases": dict(aliases or {})},
    )


def compute_aqa(predictions: list[str], references: list[str], profile: str, language: str = "en") -> MetricResult:
    """Accuracy (%) over all questions and over the yes/no questions, as Qwen-Audio's evaluate_aqa."""
    refs = _labels(references, "reference", profile)
    hyps = _labels(predictions, "prediction", profile)
    correct = np.array([r == h for r, h in zip(refs, hyps)], dtype=np.float64)  # (N,)
    yes_no = np.array([r.lower() in YES_NO for r in refs], dtype=np.float64)  # (N,) the anchor's bi subset
    stats = np.stack([correct, correct * yes_no, yes_no], axis=1)  # (N, 3)
    overall, binary = mean(0, 100.0), ratio(1, 2, 100.0)
    values = {"accuracy": overall(stats), "yes_no_questions": int(yes_no.sum())}
    bootstrap = {"accuracy": (stats, overall)}
    not_computed = {}
    if yes_no.any():
        values["yes_no_accuracy"] = binary(stats)
        bootstrap["yes_no_accuracy"] = (stats, binary)
    else:
        not_computed["yes_no_accuracy"] = "no reference answer is 'yes' or 'no'"
    return MetricResult(
        family="aqa",
        profile=profile,
        language=None,
        n=len(refs),
        values=values,
        units={k: "count" if k == "yes_no_questions" else "%" for k in values},
        primary="accuracy",
        higher_is_better=True,
        bootstrap=bootstrap,
        per_example={"correct": correct.tolist()},
        not_computed=not_computed,
        versions=library_versions("numpy"),
        provenance={"anchor": ANCHORS[profile], "tokenizer": "whole string"},
    )


ACCURACY = MetricFamily(
    "accuracy",
    compute_accuracy,
    ACCURACY_PROFILES,
    "classification accuracy, unweighted accuracy and confusion matrix",
    reference=lambda ex: ex.label or first_text(ex.target),
    prediction=lambda p: p.get("label") or p.get("text", ""),  # label scoring stores the chosen label
    headline=("accuracy",),
    chance="majority class",
    uniform_chance=True,
)
AQA = MetricFamily(
    "aqa",
    compute_aqa,
    AQA_PROFILES,
    "audio QA accuracy and yes/no accuracy",
    reference=lambda ex: first_text(ex.target),
    headline=("accuracy", "yes_no_accuracy"),
    chance="most frequent answer",
)
