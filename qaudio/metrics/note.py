"""Music note analysis: exact-match accuracy, plus instrument, pitch and pitch-class accuracy.

The ``mna`` target is written ``"{instrument_family}, pitch {midi_pitch}"`` (``note_target``
in ``tasks/mna.py``; the format is fixed there, parsed here). Reference: Qwen-Audio
``eval_audio/evaluate_note_analysis.py`` (QwenLM/Qwen-Audio) reports instrument accuracy
(``accuracy_score``) and pitch top-1 and chroma accuracy with HEAR's ``Top1Accuracy`` and
``ChromaAccuracy`` (``eval_audio/heareval_score.py``). Its output format is tag-based, ours
plain text; the profiles differ in what "chroma" means:

- ``qwen_audio`` (exact): pitches are one-hot encoded by ``MultiLabelBinarizer`` over the
  pitch values seen in references and predictions together (sorted), and ChromaAccuracy
  compares the *column indices* mod 12, not the pitches: with refs 60/64/67/72 and
  predictions 72/64/55/60 the columns are 55, 60, 64, 67, 72 and only 64 counts (25 %). A
  missing pitch is the anchor's 128, a missing instrument the empty string.
- ``qaudio`` (qaudio's own definition): chroma is the pitch class, MIDI pitch mod 12; also
  the exact match of the whole answer, and the count of unparsed predictions.
"""

from __future__ import annotations

import re

import numpy as np

from .base import MetricFamily, MetricResult, first_text, library_versions
from .bootstrap import mean
from .classification import normalize_label

PROFILES = {
    "qwen_audio": "Qwen-Audio evaluate_note_analysis: instrument accuracy, HEAR Top1Accuracy and index-based "
    "ChromaAccuracy over MultiLabelBinarizer columns",
    "qaudio": "qaudio: exact match of 'instrument, pitch N' after label normalisation; instrument, pitch and "
    "pitch-class (pitch mod 12) accuracy",
}
ANCHORS = {
    "qwen_audio": "QwenLM/Qwen-Audio eval_audio/evaluate_note_analysis.py with heareval_score.py "
    "(Top1Accuracy, ChromaAccuracy)",
    "qaudio": "qaudio's own definition (after QwenLM/Qwen-Audio eval_audio/evaluate_note_analysis.py)",
}
MISSING_PITCH = 128  # what the anchor's get_note_info gives a note without a pitch
_PITCH = re.compile(r"\bpitch\s*(\d{1,3})\b")


def parse_note(text: str) -> tuple[str | None, int | None]:
    """``"guitar, pitch 60"`` -> ("guitar", 60); a part that is missing comes back as None."""
    text = normalize_label(text)
    head, sep, _ = text.partition(",")
    instrument = head.strip() if sep else _PITCH.sub("", text).strip(" ,")
    match = _PITCH.search(text)
    return (instrument or None), (int(match.group(1)) if match else None)


def hear_chroma_correct(pitches: np.ndarray) -> np.ndarray:
    """Per example, HEAR ChromaAccuracy on MultiLabelBinarizer columns: (N, 2) [pred, ref] -> (N,) bool."""
    columns = {p: i for i, p in enumerate(sorted(set(pitches.ravel().tolist())))}  # the binarizer's sorted classes
    index = np.vectorize(columns.__getitem__)(pitches) if len(pitches) else pitches
    return index[:, 0] % 12 == index[:, 1] % 12


_TAGGED_PITCH = re.compile(r"<\|pitch\|><\|midi_pitch_(.*?)\|>")  # Qwen-Audio's own output format
_TAGGED_INSTRUMENT = re.compile(r"<\|instrument\|>(.*)")


def qwen_audio_note(text: str) -> tuple[str | None, int | None]:
    """(instrument, pitch) of qaudio's "guitar, pitch 60" or of Qwen-Audio's tagged output.

    Qwen-Audio writes ``<|pitch|><|midi_pitch_60|>...<|instrument|>guitar``; its
    ``get_note_info`` takes the first pitch tag's number (128 when absent or not a number)
    and the text after ``<|instrument|>`` up to the next ``<``.
    """
    if "<|pitch|>" not in text and "<|instrument|>" not in text:
        return parse_note(text)
    pitch = None
    if (match := _TAGGED_PITCH.search(text)) is not None:
        try:
            pitch = int(match.group(1))
        except ValueError:
            pitch = None
    instrument = _TAGGED_INSTRUMENT.search(text)
    return (instrument.group(1).split("<")[0] if instrument else None), pitch


def _compute_qwen_audio(predictions: list[str], references: list[str], profile: str) -> MetricResult:
    instruments, pitches = [], []
    for i, (p, r) in enumerate(zip(predictions, references)):
        if not isinstance(p, str) or not isinstance(r, str):
            raise ValueError(f"example {i}: prediction and reference must be strings, got {p!r} and {r!r}")
        (p_inst, p_pitch), (r_inst, r_pitch) = qwen_audio_note(p), qwen_audio_note(r)
        instruments.append(((p_inst or ""), (r_inst or "")))
        pitches.append((MISSING_PITCH if p_pitch is None else p_pitch, MISSING_PITCH if r_pitch is None else r_pitch))
    pitch_rows = np.asarray(pitches, dtype=np.int64)  # (N, 2): predicted, reference pitch
    inst_correct = np.array([a == b for a, b in instruments], dtype=np.float64)
    # (N, 3): instrument correct, predicted pitch, reference pitch; chroma depends on the whole set of pitches
    stats = np.column_stack([inst_correct, pitch_rows]).astype(np.float64)

    def instrument(rows: np.ndarray) -> float:
        return 100.0 * float(rows[:, 0].mean())

    def pitch(rows: np.ndarray) -> float:
        return 100.0 * float((rows[:, 1] == rows[:, 2]).mean())

    def chroma(rows: np.ndarray) -> float:
        return 100.0 * float(hear_chroma_correct(rows[:, 1:3].astype(np.int64)).mean())

    aggregates = {"instrument_accuracy": instrument, "pitch_accuracy": pitch, "chroma_accuracy": chroma}
    values = {name: agg(stats) for name, agg in aggregates.items()}
    return MetricResult(
        family="note",
        profile=profile,
        language=None,
        n=len(stats),
        values=values,
        units=dict.fromkeys(values, "%"),
        primary="pitch_accuracy",
        higher_is_better=True,
        bootstrap={name: (stats, agg) for name, agg in aggregates.items()},
        per_example={"pitch_correct": (pitch_rows[:, 0] == pitch_rows[:, 1]).astype(float).tolist()},
        versions=library_versions("numpy"),
        provenance={
            "anchor": ANCHORS[profile],
            "tokenizer": "qaudio.metrics.note.parse_note ('instrument, pitch N'); "
            f"missing pitch {MISSING_PITCH}, missing instrument ''",
        },
    )


def compute(predictions: list[str], references: list[str], profile: str, language: str = "en") -> MetricResult:
    """Accuracies in percent; ``unparsed`` counts predictions missing the instrument or the pitch."""
    if profile == "qwen_audio":
        return _compute_qwen_audio(predictions, references, profile)
    rows = []
    for i, (p, r) in enumerate(zip(predictions, references)):
        if not isinstance(p, str) or not isinstance(r, str):
            raise ValueError(f"example {i}: prediction and reference must be strings, got {p!r} and {r!r}")
        ref_inst, ref_pitch = parse_note(r)
        if ref_inst is None or ref_pitch is None:
            raise ValueError(f"example {i}: reference {r!r} is not 'instrument, pitch N'")
        inst, pitch = parse_note(p)
        rows.append(
            [
                normalize_label(p) == normalize_label(r),
                inst == ref_inst,
                pitch == ref_pitch,
                pitch is not None and pitch % 12 == ref_pitch % 12,
                inst is None or pitch is None,
            ]
        )
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
        provenance={"anchor": ANCHORS[profile], "tokenizer": "qaudio.metrics.note.parse_note ('instrument, pitch N')"},
    )


FAMILY = MetricFamily(
    "note",
    compute,
    PROFILES,
    "music note exact, instrument, pitch and chroma accuracy",
    reference=lambda ex: ex.label or first_text(ex.target),
    headline=("accuracy",),
    chance="most frequent note",
)
