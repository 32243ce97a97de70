"""What every metric family returns, and how a family is declared.

A *family* (``wer``, ``bleu``, ``caption``, ...) scores lists of predictions against
references under a named *profile*: the exact text conventions of one anchor paper's
evaluation scripts. Published numbers differ partly because each anchor scores differently,
so every result records the profile it used and the versions of the libraries that computed
it.

A result also carries, for each metric that supports it, per-example *sufficient statistics*
and the function that turns any sample of those rows back into the corpus value. Bootstrap
confidence intervals resample examples and recompute that corpus statistic (for example WER =
sum of edits / sum of reference words), which is not the same as averaging per-example
scores.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from .bootstrap import bootstrap_ci

Aggregate = Callable[[np.ndarray], float]  # (N, K) per-example statistics -> corpus value


@dataclass
class MetricResult:
    """The scores of one family on one list of examples, with everything needed to trust them."""

    family: str  # the metric family: wer, bleu, caption, aqa, accuracy, timestamps, note
    profile: str  # the named convention used (see the family's PROFILES)
    language: str | None  # the text language the conventions were applied for
    n: int  # number of examples scored
    values: dict[str, float]  # every computed metric by name, in the unit given by `units`
    units: dict[str, str]  # metric name -> unit ("%", "ms", "count", "BLEU", "score")
    primary: str  # the headline metric, a key of `values`
    higher_is_better: bool  # direction of the primary metric
    # Per-example statistics for bootstrap: metric name -> ((N, K) array, aggregate function).
    bootstrap: dict[str, tuple[np.ndarray, Aggregate]] = field(default_factory=dict, repr=False)
    # Per-example scores where a per-example score means something (shown in reports).
    per_example: dict[str, list[float]] = field(default_factory=dict, repr=False)
    # Metric name -> why it was not computed and how to get it (never a number).
    not_computed: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # confusion matrix, signature, counts
    notes: list[str] = field(default_factory=list)  # deviations from the anchor, caveats
    versions: dict[str, str] = field(default_factory=dict)  # library -> version
    # How the number was made: the anchor file the profile follows, normalisers with their
    # source and version, tokenizer (see the family modules); reproduces the number later.
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.primary not in self.values and self.primary not in self.not_computed:
            raise ValueError(f"primary metric {self.primary!r} is neither in values nor in not_computed")
        for name in self.bootstrap:
            if name not in self.values:
                raise ValueError(f"bootstrap statistics given for {name!r}, which has no value")

    @property
    def score(self) -> float:
        """The primary metric's value (NaN when it could not be computed)."""
        return self.values.get(self.primary, math.nan)

    def ci(
        self, name: str | None = None, n: int = 1000, seed: int = 0, level: float = 0.95
    ) -> tuple[float, float] | None:
        """Bootstrap confidence interval of one metric (default: the primary); None if not resamplable."""
        name = name or self.primary
        if name not in self.bootstrap:
            return None
        stats, aggregate = self.bootstrap[name]
        return bootstrap_ci(stats, aggregate, n=n, seed=seed, level=level)

    def cis(self, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Confidence intervals of every metric that has per-example statistics."""
        return {name: ci for name in self.bootstrap if (ci := self.ci(name, n, seed, level)) is not None}

    def to_dict(self, bootstrap: int = 0, seed: int = 0, per_example: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; ``bootstrap`` > 0 adds 95% intervals from that many resamples."""
        out: dict[str, Any] = {
            "family": self.family,
            "profile": self.profile,
            "language": self.language,
            "n": self.n,
            "primary": self.primary,
            "higher_is_better": self.higher_is_better,
            "values": {k: _json_number(v) for k, v in self.values.items()},
            "units": dict(self.units),
        }
        if bootstrap > 0:
            out["ci95"] = {k: [_json_number(lo), _json_number(hi)] for k, (lo, hi) in self.cis(bootstrap, seed).items()}
            out["bootstrap"] = {"resamples": bootstrap, "seed": seed}
        if self.not_computed:
            out["not_computed"] = dict(self.not_computed)
        if self.details:
            out["details"] = self.details
        if self.notes:
            out["notes"] = list(self.notes)
        if per_example:
            out["per_example"] = {k: [_json_number(x) for x in v] for k, v in self.per_example.items()}
        out["versions"] = dict(self.versions)
        out["provenance"] = {"profile": self.profile, **self.provenance, "versions": dict(self.versions)}
        return out


def _json_number(x: float) -> float | int | None:
    """NaN is not JSON: write null instead."""
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return None if math.isnan(x) else x


_COMMON_ARGUMENTS = ("predictions", "references", "profile", "language")


def first_text(value: str | list[str]) -> str:
    """A reference that may be a list of strings, as one string (the first)."""
    return value[0] if isinstance(value, list) else value


def prediction_text(prediction: dict) -> str:
    """What most families score of a stored prediction (a report's ``predictions`` entry): its text."""
    return prediction.get("text", "")


# An analysis of one benchmark drawn in the report: (examples, scored values per system,
# MetricResult per system) -> a JSON-ready dict, or None when there is nothing to draw.
Analysis = Callable[[Sequence[Any], dict[str, list], dict[str, "MetricResult"]], "dict | None"]


@dataclass(frozen=True)
class MetricFamily:
    """Everything qaudio knows about one metric family, declared once in the family's module.

    :data:`qaudio.metrics.METRICS` registers one per family; ``qaudio eval``, ``qaudio score``
    and the report read these fields instead of checking family names, so adding a family
    is one module plus its registration.
    """

    name: str
    compute: Callable[..., MetricResult]  # (predictions, references, profile, language, **options)
    profiles: dict[str, str]  # profile name -> what it does; the first is the default
    description: str
    reference: Callable[[Any], Any]  # an Example -> its reference, in the form compute() takes
    headline: tuple[str, ...]  # the metrics a paper's table prints (report.md), in order; the rest in report.json
    prediction: Callable[[dict], Any] = prediction_text  # a stored prediction dict -> what is scored
    lower_is_better: frozenset[str] = frozenset()  # metric names where lower is better; the others: higher
    chance: str | None = None  # name of the "most frequent reference" baseline; None: no useful chance level
    uniform_chance: bool = False  # also a uniform random guess over the label set (classification)
    by_language: bool = False  # conventions depend on the text language: a mixed file is scored per language
    multi_reference: bool = False  # a reference may be a list of strings (all captions, several translations)
    timed_words: bool = False  # references and predictions may be [[word, start_s, end_s], ...]
    analyses: dict[str, Analysis] = field(default_factory=dict)  # report "analysis" key -> how it is computed

    @property
    def default_profile(self) -> str:
        return next(iter(self.profiles))

    def check_profile(self, profile: str | None) -> str:
        """The profile to use: ``profile`` if valid, the default if None."""
        if profile is None:
            return self.default_profile
        if profile not in self.profiles:
            valid = "; ".join(f"{k} ({v})" for k, v in self.profiles.items())
            raise ValueError(f"unknown {self.name} profile {profile!r}; valid profiles: {valid}")
        return profile

    def __call__(
        self,
        predictions: Sequence,
        references: Sequence,
        profile: str | None = None,
        language: str = "en",
        **options: Any,
    ) -> MetricResult:
        if len(predictions) != len(references):
            raise ValueError(
                f"{self.name}: {len(predictions)} predictions but {len(references)} references; "
                "expected one prediction per reference"
            )
        if len(predictions) == 0:
            raise ValueError(f"{self.name}: nothing to score (no predictions)")
        accepted = [p for p in inspect.signature(self.compute).parameters if p not in _COMMON_ARGUMENTS]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(
                f"{self.name} takes no option(s) {', '.join(unknown)}; its options: {', '.join(accepted) or 'none'}"
            )
        return self.compute(
            list(predictions), list(references), profile=self.check_profile(profile), language=language, **options
        )


def language_code(language: str | None) -> str:
    """``"zh-CN"`` -> ``"zh"``: the conventions depend on the base language only."""
    if not language or not isinstance(language, str):
        raise ValueError(f"a language code is needed (e.g. en, zh), got {language!r}")
    return re.split(r"[-_]", language.strip().lower())[0]


def library_versions(*distributions: str) -> dict[str, str]:
    """Installed versions of the named distributions ("not installed" where absent)."""
    return {name: _version(name) for name in distributions}


@cache
def _version(distribution: str) -> str:
    # Cached: reading package metadata costs milliseconds, and every metric call records versions.
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


_FORMATS: dict[str, Callable[[float], str]] = {
    "count": lambda v: str(int(v)),
    "tokens": lambda v: str(int(v)),
    "%": lambda v: f"{v:.2f} %",
    "ms": lambda v: f"{v:.1f} ms",
    "BLEU": lambda v: f"{v:.2f}",
}


def format_value(value: float | None, unit: str) -> str:
    """A metric value as reports print it: "5.43 %", "35.0 ms", "1.1404" (scores), "12" (counts)."""
    if value is None or math.isnan(value):
        return "n/a"
    return _FORMATS.get(unit, lambda v: f"{v:.4f}")(value)


DISPLAY_NAMES = {
    "wer": "WER",
    "cer": "CER",
    "bleu": "BLEU",
    "bleu_1": "BLEU-1",
    "bleu_2": "BLEU-2",
    "bleu_3": "BLEU-3",
    "bleu_4": "BLEU-4",
    "meteor": "METEOR",
    "rouge_l": "ROUGE-L",
    "cider_d": "CIDEr-D",
    "spice": "SPICE",
    "spider": "SPIDEr",
    "aas_ms": "AAS",
    "median_boundary_error_ms": "median boundary error",
    "within_50ms": "boundaries within 50 ms",
    "within_100ms": "boundaries within 100 ms",
}


def display_name(metric: str) -> str:
    """How a metric key is written in reports: "spider" -> "SPIDEr", "yes_no_accuracy" -> "yes no accuracy"."""
    return DISPLAY_NAMES.get(metric, metric.replace("_", " "))
