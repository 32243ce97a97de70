"""Music note analysis: exact-match accuracy, plus instrument, pitch and pitch-class accuracy.

The ``mna`` target is written ``"{instrument_family}, pitch {midi_pitch}"`` (``note_target``
in ``tasks/mna.py``; the format is fixed there, parsed here). Reference: Qwen-Audio
``eval_audio/evaluate_note_analysis.py`` (QwenLM/Qwen-Audio) reports instrument accuracy
(``accuracy_score``) and pitch top-1 and chroma accuracy (HEAR's ``Top1Accuracy`` and
``ChromaAccuracy``: the pitch class, MIDI pitch mod 12, must match); its output format is
tag-based, ours is plain text, so only the metric definitions carry over.
"""

from __future__ import annotations

import re

import numpy as np

from .base import MetricResult, library_versions
from .bootstrap import mean
from .classification import normalize_label

PROFILES = {"qaudio": "exact match of 'instrument, pitch N' after label normalisation; instrument, pitch and "
                      "chroma (pitch mod 12) accuracy as Qwen-Audio evaluate_note_analysis"}
_PITCH = re.compile(r"\bpitch\s*(\d{1,3})\b")


def parse_note(text: str) -> tuple[str | None, int | None]:
    """``"guitar, pitch 60"`` -> ("guitar", 60); a part that is missing comes back as None."""
    text = normalize_label(text)
    head, sep, _ = text.partition(",")
    instrument = head.strip() if sep else _PITCH.sub("", text).strip(" ,")
    match = _PITCH.search(text)
    return (instrument or None), (int(match.group(1)) if match else None)


def compute(predictions: list[str], references: list[str], profile: str, language: str = "en") -> MetricResult:
    """Accuracies in percent; ``unparsed`` counts predictions missing the instrument or the pitch."""
    rows = []
    for i, (p, r) in enumerate(zip(predictions, references)):
        if not isinstance(p, str) or not isinstance(r, str):
            raise ValueError(f"example {i}: prediction and reference must be strings, got {p!r} and {r!r}")
        ref_inst, ref_pitch = parse_note(r)
        if ref_inst is None or ref_pitch is None:
            raise ValueError(f"example {i}: reference {r!r} is not 'instrument, pitch N'")
        inst, pitch = parse_note(p)
        rows.append([
            normalize_label(p) == normalize_label(r),
            inst == ref_inst,
            pitch == ref_pitch,
            pitch is not None and pitch % 12 == ref_pitch % 12,
            inst is None or pitch is None,
        ])
    stats = np.asarray(rows, dtype=np.float64)  # (N, 5): exact, instrument, pitch, chroma, unparsed
    names = ("accuracy", "instrument_accuracy", "pitch_accuracy", "chroma_accuracy")
    aggregates = {name: mean(col, 100.0) for col, name in enumerate(names)}
    values = {name: agg(stats) for name, agg in aggregates.items()}
    values["unparsed"] = int(stats[:, 4].sum())
    return MetricResult(
        family="note",
        profile=profile,
        language=None,
        n=len(rows),
        values=values,
        units={k: "count" if k == "unparsed" else "%" for k in values},
        primary="accuracy",
        higher_is_better=True,
        bootstrap={name: (stats, agg) for name, agg in aggregates.items()},
        per_example={"correct": stats[:, 0].tolist()},
        versions=library_versions("numpy"),
    )
