"""Pseudo-labels with a confidence: two decodes, a likelihood, an agreement, a filter.

Each clip is decoded twice, greedily and with beam search. The kept transcript (the beam's
by default) gets two confidences:

- ``logprob``: its mean token log-probability, log p(text + eos | audio, prompt) over the
  target's tokens, scored exactly by the model (not read off the search's running scores);
- ``agreement``: 1 - WER between the two decodes (word level, jiwer), clipped to [0, 1];
  two searches that land on the same words are a cheap stand-in for an ensemble's agreement
  (noisy-student practice: Xie et al., CVPR 2020; Park et al., Interspeech 2020, who filter
  on normalised likelihood and keep a fraction).

A clip is kept when its transcript is non-empty, not flagged degenerate by inference, its
scores pass ``min_logprob`` and ``min_agreement``, and it is within the best ``keep_fraction``
of all clips by ``logprob``. Every clip's scores are written (``scored.jsonl``), the kept ones
as a training manifest (``kept.jsonl``), both in qaudio's example schema with the scores
under ``meta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import Example, write_manifest
from . import backend

if TYPE_CHECKING:
    from ..infer import Pipeline

DECODES = {"greedy": 1, "beam": None}  # decode name -> beams (None: the configured beam width)


@dataclass(frozen=True)
class FilterConfig:
    min_logprob: float = -1.0  # mean token log-probability (nats) a kept transcript needs at least
    min_agreement: float = 0.8  # 1 - WER(greedy, beam) a kept transcript needs at least
    keep_fraction: float = 1.0  # keep at most this fraction of all clips, the most likely first

    def __post_init__(self) -> None:
        if not 0 < self.keep_fraction <= 1:
            raise ValueError(f"keep_fraction must be in (0, 1], got {self.keep_fraction}")
        if not 0 <= self.min_agreement <= 1:
            raise ValueError(f"min_agreement must be in [0, 1], got {self.min_agreement}")
        if self.min_logprob > 0:
            raise ValueError(f"min_logprob is a log-probability (<= 0), got {self.min_logprob}")


def agreement(a: str, b: str) -> float:
    """1 - WER of ``a`` against ``b`` (word level), clipped to [0, 1]; two empty texts agree."""
    import jiwer

    if not a.split() and not b.split():
        return 1.0
    if not a.split() or not b.split():
        return 0.0
    return max(0.0, 1.0 - jiwer.wer(b, a))


def reason_dropped(ex: Example, cfg: FilterConfig) -> str | None:
    """Why a scored clip is not kept by the thresholds (None: it passes)."""
    m = ex.meta
    if m.get("error"):
        return "unreadable audio"
    assert isinstance(ex.target, str), "a pseudo-label is one transcript"
    if not ex.target.strip():
        return "empty transcript"
    if m.get("flags"):
        return "flagged: " + ",".join(m["flags"])
    if m["logprob"] < cfg.min_logprob:
        return "low log-probability"
    if m["agreement"] < cfg.min_agreement:
        return "decodes disagree"
    return None


def select(scored: list[Example], cfg: FilterConfig) -> tuple[list[Example], dict[str, int]]:
    """The kept examples (most likely first) and how many were dropped for each reason."""
    dropped: dict[str, int] = {}
    passing = []
    for ex in scored:
        why = reason_dropped(ex, cfg)
        if why:
            dropped[why.split(":")[0]] = dropped.get(why.split(":")[0], 0) + 1
        else:
            passing.append(ex)
    passing.sort(key=lambda ex: -ex.meta["logprob"])
    cap = math.ceil(cfg.keep_fraction * len(scored))
    if len(passing) > cap:
        dropped["beyond keep fraction"] = len(passing) - cap
    return passing[:cap], dropped


def pseudo_label(
    model: Pipeline,
    clips: list[Example],
    num_beams: int = 4,
    keep: str = "beam",
    lang: str = "en",
    batch_size: int = 16,
) -> list[Example]:
    """Every clip with its transcript (``target``) and scores (``meta``): logprob, agreement, both decodes."""
    if keep not in DECODES:
        raise ValueError(f"unknown decode {keep!r} to keep; valid choices: {', '.join(DECODES)}")
    paths = [ex.audio for ex in clips]
    decodes = {
        name: backend.transcribe(model, paths, beams or num_beams, lang, batch_size) for name, beams in DECODES.items()
    }
    kept = decodes[keep]
    scores = backend.score(model, paths, [t.text for t in kept], lang, batch_size)
    out = []
    for i, ex in enumerate(clips):
        total, tokens = scores[i]
        meta = {
            **ex.meta,
            "source": "pseudo-label",
            "decode": keep,
            "logprob": round(total / tokens, 4) if math.isfinite(total) else -1e9,
            "agreement": round(agreement(decodes["greedy"][i].text, decodes["beam"][i].text), 4),
            "greedy": decodes["greedy"][i].text,
            "beam": decodes["beam"][i].text,
            "flags": kept[i].flags,
            "error": kept[i].error,
        }
        out.append(replace(ex, target=kept[i].text, meta={k: v for k, v in meta.items() if v not in (None, [])}))
    return out


def write(scored: list[Example], kept: list[Example], out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(scored, out_dir / "scored.jsonl", relative_to_manifest=False)
    write_manifest(kept, out_dir / "kept.jsonl", relative_to_manifest=False)
