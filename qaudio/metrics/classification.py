"""Classification accuracy with a confusion matrix, and audio-QA accuracy with its yes/no split.

References: Qwen-Audio ``eval_audio/evaluate_emotion.py``, ``evaluate_scene.py`` and
``evaluate_vocal_sound.py`` score ``sklearn.metrics.accuracy_score(refs, hyps)`` on the
decoded strings; ``evaluate_aqa.py`` does the same and adds "bi_ACC", the accuracy over the
examples whose reference, lower-cased, is "yes" or "no" (QwenLM/Qwen-Audio).

Profiles:
- ``normalized`` (default): both sides pass through :func:`normalize_label`, the same
  normalisation the task parser applies to generated labels (tags removed, white space and
  final full stops stripped, lower-cased), so "Happy." counts as "happy".
- ``exact`` / ``qwen_audio``: the anchor's raw comparison (strings stripped of surrounding
  white space, as ``tokenizer.decode(...).strip()`` leaves them, and nothing else).

Constrained decoding over a task's label set is the decoder's side; here a prediction outside
the label set is simply wrong and is counted in ``out_of_set``. Unweighted accuracy (the mean
of per-class recalls, "UA" in emotion recognition) is reported beside accuracy.
"""

from __future__ import annotations

import numpy as np

from .base import MetricResult, library_versions
from .bootstrap import mean, ratio
from ..tags import parse_label

ACCURACY_PROFILES = {
    "normalized": "exact match after normalisation (tags removed, stripped, final '.' dropped, lower-cased)",
    "exact": "exact string match after stripping surrounding white space (Qwen-Audio evaluate_emotion/scene)",
}
AQA_PROFILES = {
    "normalized": "accuracy and yes/no accuracy after label normalisation",
    "qwen_audio": "Qwen-Audio evaluate_aqa: exact string match; yes/no subset where reference.lower() is yes or no",
}
RAW_PROFILES = ("exact", "qwen_audio")  # the anchor's raw string comparison
OTHER = "(other)"  # confusion-matrix column for predictions outside the label set
YES_NO = ("yes", "no")


def normalize_label(text: str) -> str:
    """The label a generated or reference string stands for (one rule for parser and metric)."""
    return parse_label(text)[0]


def _label(text: str, profile: str) -> str:
    return text.strip() if profile in RAW_PROFILES else normalize_label(text)


def _labels(texts: list, what: str, profile: str) -> list[str]:
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"example {i}: the {what} must be a string, got {type(t).__name__}: {t!r}")
    return [_label(t, profile) for t in texts]


def confusion(refs: list[str], hyps: list[str], labels: list[str]) -> dict:
    """Counts with rows = reference label, columns = predicted label (+ OTHER if needed)."""
    columns = list(labels) + ([OTHER] if any(h not in labels for h in hyps) else [])
    index = {label: i for i, label in enumerate(columns)}
    matrix = np.zeros((len(labels), len(columns)), dtype=np.int64)
    for r, h in zip(refs, hyps):
        matrix[index[r], index.get(h, index.get(OTHER, -1))] += 1
    return {"labels": list(labels), "columns": columns, "matrix": matrix.tolist()}


def compute_accuracy(predictions: list[str], references: list[str], profile: str, language: str = "en",
                     labels: list[str] | tuple[str, ...] | None = None) -> MetricResult:
    """Accuracy and unweighted accuracy (%) with a confusion matrix over ``labels``.

    ``labels``: the task's label set, in the order the matrix should show; default: the
    reference labels seen, sorted. A reference outside ``labels`` is an error.
    """
    refs = _labels(references, "reference", profile)
    hyps = _labels(predictions, "prediction", profile)
    if labels:
        labels = [_label(lab, profile) for lab in labels]
        unknown = sorted({r for r in refs if r not in labels})
        if unknown:
            raise ValueError(f"reference label(s) {', '.join(map(repr, unknown))} are not in the label set {', '.join(labels)}")
    else:
        labels = sorted(set(refs))
    correct = np.array([r == h for r, h in zip(refs, hyps)], dtype=np.float64)  # (N,)
    recalls = [correct[[r == lab for r in refs]].mean() for lab in labels if lab in refs]
    out_of_set = sum(h not in labels for h in hyps)
    aggregate = mean(0, 100.0)
    return MetricResult(
        family="accuracy",
        profile=profile,
        language=None,
        n=len(refs),
        values={"accuracy": aggregate(correct[:, None]), "unweighted_accuracy": 100.0 * float(np.mean(recalls)),
                "out_of_set": out_of_set},
        units={"accuracy": "%", "unweighted_accuracy": "%", "out_of_set": "count"},
        primary="accuracy",
        higher_is_better=True,
        bootstrap={"accuracy": (correct[:, None], aggregate)},
        per_example={"correct": correct.tolist()},
        details={"confusion": confusion(refs, hyps, labels)},
        versions=library_versions("numpy"),
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
    )
