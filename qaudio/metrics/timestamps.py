"""Word-timestamp accuracy: Qwen-Audio's average absolute shift (AAS) and boundary errors.

Reference: Qwen-Audio ``eval_audio/evaluate_srwt.py``, ``AverageShiftCalculator``
(QwenLM/Qwen-Audio). Profiles:

- ``qwen_audio`` (exact): each text loses ``<|startoftranscript|>``, ``<|transcribe|>`` and
  ``<|en|>`` (else ``<|zh|>``); its *tokens* are the raw texts between consecutive time tokens
  (``<|1.23|>``), so ``<|sil|>`` segments and the empty gap between one word's end and the next
  word's start are tokens too, and text before the first or after the last time token is
  dropped. One departure: spaces at either end of a token are dropped, so " is" and "is"
  are the same token (qaudio's targets space their words, the anchor's data need not).
  Tokens are aligned with the ``edit_distance`` package's ``SequenceMatcher`` (the anchor's
  own dependency, so ties resolve alike); every token the alignment marks *equal*
  contributes |start_ref - start_hyp| + |end_ref - end_hyp|; an utterance with no equal token
  is left out; AAS = the corpus sum of shifts / the corpus count of equal tokens (the anchor
  prints seconds, qaudio milliseconds). WER is the anchor's ``compute_wer`` on ``remove_sp``
  of the same texts (``qwen_audio`` profile of :mod:`qaudio.metrics.wer`). A prediction
  without any time token is left out of AAS and counted in ``malformed_predictions`` (the
  anchor drops it and then stops on an assertion, since its lists no longer pair up).
- ``qaudio_words``: qaudio's own definition over *words* only: parsed words
  (:func:`qaudio.tags.parse_timestamped`) aligned by edit distance, AAS over equal words.

A prediction with malformed time tokens is still scored with the times the parser recovers
and is counted in ``malformed_predictions`` (the anchor drops such outputs, which can flatter
AAS). Beyond the anchor: the median absolute boundary error over all matched start and end
boundaries, and the share of boundaries within 50 ms and 100 ms.

In ``qaudio_words`` the alignment is rapidfuzz's Levenshtein alignment (the backend of jiwer); where several
alignments are optimal it may pick a different one than the anchor's ``edit_distance``
package, which can change which of two identical words is matched.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from rapidfuzz.distance import Levenshtein

from ..tags import format_timestamped, parse_timestamped
from . import wer as wer_metric
from .base import Aggregate, MetricFamily, MetricResult, library_versions
from .bootstrap import ratio

if TYPE_CHECKING:
    from ..data import Example

PROFILES = {
    "qwen_audio": "Qwen-Audio evaluate_srwt AverageShiftCalculator: AAS (ms) over the raw segments between time tokens "
    "(<|sil|> and empty gaps included), aligned by edit_distance; WER with qwen_audio conventions",
    "qaudio_words": "qaudio: AAS (ms) over edit-distance-matched words only; median boundary error and shares within "
    "50/100 ms; WER with qwen_audio conventions",
}
ANCHORS = {
    "qwen_audio": "QwenLM/Qwen-Audio eval_audio/evaluate_srwt.py (AverageShiftCalculator, compute_wer)",
    "qaudio_words": "qaudio's own definition (after QwenLM/Qwen-Audio eval_audio/evaluate_srwt.py)",
}
_TIME_TOKEN = re.compile(r"<\|\d{1,2}\.\d+\|>")  # the anchor's time-token pattern
TOLERANCES_MS = (50, 100)
HIST_EDGES_MS = [float(x) for x in range(0, 520, 20)]  # 20-ms bins to 500 ms; the rest is overflow

Words = list[tuple[str, float, float]]


def timed_words(value: str | list, what: str = "prediction") -> tuple[Words, list[str]]:
    """(words, problems) from time-token text (``<|0.00|>hi<|0.30|>``) or [[word, start_s, end_s], ...]."""
    if isinstance(value, str):
        parsed = parse_timestamped(value)
        return parsed.words, parsed.problems
    if not isinstance(value, (list, tuple)):
        raise ValueError(
            f"{what} words must be time-token text or [[word, start_s, end_s], ...], got {type(value).__name__}"
        )
    words = []
    for i, item in enumerate(value):
        ok = (
            isinstance(item, (list, tuple))
            and len(item) == 3
            and isinstance(item[0], str)
            and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in item[1:])
        )
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
        for r, h in zip(ref[op.src_start : op.src_end], hyp[op.dest_start : op.dest_end], strict=True):
            errors.append((abs(r[1] - h[1]) * 1000, abs(r[2] - h[2]) * 1000))
    # Round away float noise so 0.35 - 0.30 counts as 50 ms, within a 50 ms tolerance.
    return np.round(np.asarray(errors, dtype=np.float64).reshape(-1, 2), 6)


def _as_text(value: str | list, what: str) -> str:
    """Time-token text, as the anchor reads it; word lists are written in qaudio's target format."""
    if isinstance(value, str):
        return value
    return format_timestamped(timed_words(value, what)[0])


def qwen_audio_segments(text: str) -> tuple[list[str], list[tuple[float, float]]] | None:
    """The anchor's tokens (raw text between consecutive time tokens) and their (start, end) in s.

    None when the text holds no time token (the anchor counts a pattern error), or a single one:
    then no word is timed, and the anchor's tab split would give one empty token without times.
    """
    text = text.replace("<|startoftranscript|>", "").replace("<|transcribe|>", "")
    if "<|en|>" in text:
        text = text.replace("<|en|>", "")
    elif "<|zh|>" in text:
        text = text.replace("<|zh|>", "")
    times = [float(t[2:-2]) for t in _TIME_TOKEN.findall(text)]
    # Spaces around a token are formatting: qaudio's targets put one before each word (as
    # Whisper's do), and a model trained before that did not; either way the word is the same.
    segments = [segment.strip(" ") for segment in _TIME_TOKEN.split(text)[1:-1]]
    if len(times) != len(segments) + 1 or not segments:
        return None
    return segments, list(itertools.pairwise(times))


def qwen_audio_shift(ref: tuple[list[str], list], hyp: tuple[list[str], list]) -> tuple[float, int]:
    """(sum of start and end shifts in s, equal tokens) of one utterance, as AverageShiftCalculator."""
    import edit_distance

    # The anchor joins segments with tabs and splits again; a tab inside a segment splits it.
    ref_tokens, hyp_tokens = "\t".join(ref[0]).split("\t"), "\t".join(hyp[0]).split("\t")
    ref_equal, hyp_equal = [], []  # per token: did the alignment mark it equal
    # edit_distance's opcodes cover one token each, so one flag per opcode is one per token.
    for tag, *_ in edit_distance.SequenceMatcher(ref_tokens, hyp_tokens).get_opcodes():
        if tag in ("replace", "delete", "equal"):
            ref_equal.append(tag == "equal")
        if tag in ("replace", "insert", "equal"):
            hyp_equal.append(tag == "equal")
    ref_times = [t for keep, t in zip(ref_equal, ref[1], strict=True) if keep]
    hyp_times = [t for keep, t in zip(hyp_equal, hyp[1], strict=True) if keep]
    shift = 0.0
    for r, h in zip(ref_times, hyp_times, strict=True):
        shift += abs(r[0] - h[0]) + abs(r[1] - h[1])
    return shift, len(ref_times)


def _compute_qwen_audio(predictions: list, references: list, profile: str, language: str) -> MetricResult:
    refs = [_as_text(r, "reference") for r in references]
    hyps = [_as_text(p, "prediction") for p in predictions]
    rows, malformed = [], 0
    for i, (r, h) in enumerate(zip(refs, hyps, strict=True)):
        ref = qwen_audio_segments(r)
        if ref is None:
            raise ValueError(f"example {i}: the reference has no time token (<|1.23|>): {r[:80]!r}")
        hyp = qwen_audio_segments(h)
        if hyp is None:
            malformed += 1
            rows.append((0.0, 0))
            continue
        rows.append(qwen_audio_shift(ref, hyp))
    stats = np.asarray(rows, dtype=np.float64).reshape(-1, 2)  # (N, 2): shift (s), equal tokens
    text = wer_metric.compute(hyps, refs, "qwen_audio", language)

    def aas_ms(rows: np.ndarray) -> float:
        return 1000.0 * float(rows[:, 0].sum()) / float(rows[:, 1].sum())

    values, units, not_computed = {}, {}, {}
    bootstrap: dict[str, tuple[np.ndarray, Aggregate]] = {}
    if stats[:, 1].sum() > 0:
        values["aas_ms"], units["aas_ms"], bootstrap["aas_ms"] = aas_ms(stats), "ms", (stats, aas_ms)
    else:
        not_computed["aas_ms"] = "no predicted token matches a reference token, so no time can be compared"
    values.update(matched_tokens=int(stats[:, 1].sum()), malformed_predictions=malformed)
    units.update(matched_tokens="count", malformed_predictions="count")
    values[text.primary], units[text.primary] = text.values[text.primary], "%"
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
        per_example={"shift_ms": (1000.0 * stats[:, 0]).tolist(), "matched_tokens": stats[:, 1].tolist()},
        not_computed=not_computed,
        versions=library_versions("edit-distance", "jiwer"),
        provenance={
            "anchor": ANCHORS[profile],
            "tokenizer": "raw segments between time tokens, aligned by edit_distance.SequenceMatcher",
            "wer": text.provenance,
        },
    )


def compute(predictions: list, references: list, profile: str, language: str = "en") -> MetricResult:
    """AAS (ms), boundary statistics and WER for timestamped transcripts."""
    if profile == "qwen_audio":
        return _compute_qwen_audio(predictions, references, profile, language)
    refs, hyps, malformed = [], [], 0
    for i, (p, r) in enumerate(zip(predictions, references, strict=True)):
        ref, problems = timed_words(r, "reference")
        if problems:
            raise ValueError(f"example {i}: malformed reference timestamps: {'; '.join(problems)}")
        hyp, problems = timed_words(p, "prediction")
        malformed += bool(problems)
        refs.append(ref)
        hyps.append(hyp)
    per_example = [matched_boundaries(r, h) for r, h in zip(refs, hyps, strict=True)]  # each (M_i, 2)
    within = [[(e <= tol).sum() for tol in TOLERANCES_MS] for e in per_example]
    # (N, 5): shift sum (ms), matched words, boundaries within 50 ms, within 100 ms, boundaries
    stats = np.array(
        [[e.sum(), len(e), *w, e.size] for e, w in zip(per_example, within, strict=True)], dtype=np.float64
    )
    aggregates = {
        "aas_ms": ratio(0, 1, 1.0),
        **{f"within_{t}ms": ratio(2 + k, 4, 100.0) for k, t in enumerate(TOLERANCES_MS)},
    }
    all_errors = np.concatenate([e.ravel() for e in per_example])

    text = wer_metric.compute(
        [" ".join(w for w, _, _ in h) for h in hyps],
        [" ".join(w for w, _, _ in r) for r in refs],
        "qwen_audio",
        language,
    )
    values, units, not_computed = {}, {}, {}
    bootstrap: dict[str, tuple[np.ndarray, Aggregate]] = {}
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
        provenance={
            "anchor": ANCHORS[profile],
            "tokenizer": "words parsed by qaudio.tags.parse_timestamped, aligned by rapidfuzz Levenshtein",
            "wer": text.provenance,
        },
    )


# ---- The family ----------------------------------------------------------------------------


def reference_words(example: Example) -> list[list]:
    """An example's reference: its word times as [[word, start_s, end_s], ...]."""
    return [list(w) for w in example.words or []]


def stored_prediction(p: dict) -> str | list[list]:
    """What is scored of a stored prediction. One window: the generated time-token text, so the
    metric counts malformed outputs. Several windows: the stitched words, whose times are shifted
    to the whole clip."""
    if p.get("windows", 1) > 1 and p.get("words") is not None:
        return [[w["word"], w["start"], w["end"]] for w in p["words"]]
    return p.get("raw") or ""


def boundary_errors(examples: Sequence[Example], predictions: dict[str, list], results: dict) -> dict | None:
    """Absolute start and end errors (ms) of every matched word, binned, per system (the report's histogram)."""
    counts, overflow = {}, {}
    for system in results:
        errors = [
            matched_boundaries(
                timed_words(reference_words(ex), "reference")[0], timed_words(p, "prediction")[0]
            ).ravel()
            for ex, p in zip(examples, predictions[system], strict=True)
        ]
        flat = np.concatenate(errors) if errors else np.zeros(0)
        histogram, _ = np.histogram(flat, bins=HIST_EDGES_MS)
        counts[system], overflow[system] = histogram.tolist(), int((flat > HIST_EDGES_MS[-1]).sum())
    if not any(sum(c) + overflow[s] for s, c in counts.items()):
        return None  # no word matched: nothing to draw (the metric says why AAS is not computed)
    return {"edges_ms": HIST_EDGES_MS, "counts": counts, "overflow": overflow}


FAMILY = MetricFamily(
    "timestamps",
    compute,
    PROFILES,
    "word-timestamp AAS (ms), boundary errors, WER",
    reference=reference_words,
    prediction=stored_prediction,
    headline=("aas_ms", "wer", "cer"),
    lower_is_better=frozenset({"aas_ms", "median_boundary_error_ms", "wer", "cer"}),
    by_language=True,
    timed_words=True,
    analyses={"timestamp_errors": boundary_errors},
)
