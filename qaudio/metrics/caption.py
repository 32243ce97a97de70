"""Audio-captioning metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, and SPICE / SPIDEr when SPICE runs.

References: the DCASE audio-captioning metrics as packaged by aac-metrics 0.5.4 (Labbé et
al., https://github.com/Labbeti/aac-metrics), which reproduce the COCO caption evaluation
(Chen et al., arXiv:1504.00325) used by Qwen-Audio's ``eval_audio/evaluate_caption.py``;
SPIDEr = (CIDEr-D + SPICE) / 2 (Liu et al., "Improved Image Captioning via Policy Gradient
Optimization of SPIDEr", ICCV 2017).

Every clip's references are passed as a list of whole sentences. (SLAM-LLM's AAC evaluation
passes a single reference split into a word list, so each *word* is scored as a reference
caption: a known bug this module checks for.) Candidates and references go through the PTB
tokenizer in one Java run, then aac-metrics scores the tokenized text, which gives the same
numbers as ``aac_metrics.evaluate(preprocess=True)`` with one JVM start fewer.

Profiles differ in what reaches the tokenizer: ``qwen_audio`` (Qwen-Audio's
``compute_caption``) scores the prediction as its decode leaves it (special tokens kept,
stripped) against the references as written; ``aac_metrics`` (qaudio's own) removes tags
from both sides. Coco-caption's "CIDEr" is CIDEr-D (``cider_d`` here).

SPICE needs Stanford CoreNLP 3.6.0, which no registry serves; when it is absent the result
has no SPICE or SPIDEr value, only a ``not_computed`` entry with the reason and the fix. A
number is never printed for a metric that was not computed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..tags import strip_tags
from .base import MetricFamily, MetricResult, language_code, library_versions
from .bootstrap import mean
from .caption_jars import prepare_caption_jars

PROFILES = {
    "aac_metrics": "qaudio: aac-metrics 0.5.4 (COCO caption evaluation): PTB tokenizer, all references per clip; "
    "tags removed from both sides",
    "qwen_audio": "Qwen-Audio evaluate_caption: the same metrics with the prediction stripped and its tags kept, "
    "references as written",
}
ANCHORS = {
    "aac_metrics": "qaudio's own definition (aac-metrics, the COCO caption evaluation)",
    "qwen_audio": "QwenLM/Qwen-Audio eval_audio/evaluate_caption.py (compute_caption: PTB tokenizer, Bleu(4), Meteor, "
    "Rouge, Cider, Spice of the COCO caption evaluation)",
}
# profile -> what becomes of a caption before the PTB tokenizer (which reads one line each)
TRANSFORMS: dict[str, Callable[[str], str]] = {
    "aac_metrics": lambda text: " ".join(strip_tags(text).split()),
    "qwen_audio": lambda text: " ".join(text.split()),  # decode(skip_special_tokens=False).strip(): tags stay
}
BASE_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider_d")
# Metrics whose corpus value is the mean of the per-clip values (CIDEr-D with document
# frequencies from the whole reference set, held fixed), so resampling clips is exact.
# BLEU and METEOR are corpus statistics computed inside their programs: no interval.
MEAN_METRICS = ("rouge_l", "cider_d", "spice", "spider")
PER_CLIP = ("meteor", "rouge_l", "cider_d", "spice", "spider")


def _references(references: list, transform: Callable[[str], str]) -> list[list[str]]:
    refs = []
    for i, r in enumerate(references):
        r = [r] if isinstance(r, str) else r
        if not isinstance(r, (list, tuple)) or not all(isinstance(x, str) for x in r):
            raise ValueError(f"clip {i}: references must be a string or a list of strings, got {r!r}")
        r = [transform(x) for x in r]
        if not r or not all(r):
            raise ValueError(
                f"clip {i}: every clip needs at least one non-empty reference caption, got {references[i]!r}"
            )
        refs.append(r)
    return refs


def _word_list_clips(refs: list[list[str]]) -> list[int]:
    """Clips whose 'references' are all single words: most likely one caption split into words."""
    return [i for i, r in enumerate(refs) if len(r) >= 3 and all(len(x.split()) == 1 for x in r)]


_SPIDER_NEEDS = "SPIDEr = (CIDEr-D + SPICE) / 2 needs SPICE. "


def add_spice(
    values: dict[str, float], per_clip: dict[str, list[float]], run_spice: Callable[[], tuple]
) -> dict[str, str]:
    """Add SPICE and SPIDEr (per clip and corpus) from ``run_spice()``; return what was not computed.

    ``run_spice`` returns aac-metrics' (corpus, per-clip) outputs. SPICE is a large Java
    program: if it fails, the other metrics stand and the failure becomes the reason.
    """
    try:
        spice_corpus, spice_clips = run_spice()
    except Exception as e:  # noqa: BLE001 - any failure of the Java program is reported, not raised
        reason = f"SPICE failed to run: {e.__class__.__name__}: {str(e)[:300]}"
        return {"spice": reason, "spider": _SPIDER_NEEDS + reason}
    values["spice"] = float(spice_corpus["spice"])
    per_clip["spice"] = [float(x) for x in spice_clips["spice"]]
    # aac-metrics' spider(): the mean of CIDEr-D and SPICE, per clip and for the corpus.
    values["spider"] = (values["cider_d"] + values["spice"]) / 2
    per_clip["spider"] = [(c + p) / 2 for c, p in zip(per_clip["cider_d"], per_clip["spice"])]
    return {}


def compute(
    predictions: list[str],
    references: list,
    profile: str,
    language: str = "en",
    cache_dir: str | None = None,
    java_path: str | None = None,
) -> MetricResult:
    """Caption metrics over clips; ``references[i]`` is a string or a list of reference captions."""
    if language_code(language) != "en":
        raise ValueError(
            f"caption metrics are English-only here (the PTB tokenizer, METEOR's paraphrase table and "
            f"SPICE's parser are English); got language {language!r}"
        )
    for i, p in enumerate(predictions):
        if not isinstance(p, str):
            raise ValueError(f"clip {i}: the prediction must be a string, got {type(p).__name__}")
    cands = [TRANSFORMS[profile](p) for p in predictions]
    refs = _references(references, TRANSFORMS[profile])
    setup = prepare_caption_jars(cache_dir, java_path)
    java = dict(cache_path=str(setup.cache_path), java_path=setup.java_path)

    from aac_metrics.functional.evaluate import evaluate
    from aac_metrics.utils.tokenization import preprocess_mult_sents

    timing = {}
    t0 = time.perf_counter()
    tokenized = preprocess_mult_sents([[c] for c in cands] + refs, **java)  # one JVM for everything
    cands_tok, refs_tok = [t[0] for t in tokenized[: len(cands)]], tokenized[len(cands) :]
    timing["ptb_tokenizer_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    corpus, clips = evaluate(cands_tok, refs_tok, preprocess=False, metrics=list(BASE_METRICS), device="cpu", **java)
    timing["metrics_s"] = time.perf_counter() - t0
    values = {k: float(corpus[k]) for k in BASE_METRICS}
    per_clip = {k: clips[k].tolist() for k in BASE_METRICS if k in PER_CLIP}

    not_computed = {}
    if setup.spice_problem is None:
        from aac_metrics.functional.spice import spice

        t0 = time.perf_counter()
        not_computed = add_spice(values, per_clip, lambda: spice(cands_tok, refs_tok, **java))
        timing["spice_s"] = time.perf_counter() - t0
    else:
        not_computed = {"spice": setup.spice_problem, "spider": _SPIDER_NEEDS + setup.spice_problem}

    notes = []
    suspicious = _word_list_clips(refs)
    if suspicious:
        notes.append(
            f"{len(suspicious)} clip(s) (first: {suspicious[0]}) have only one-word references: if these are "
            "one caption split into words (SLAM-LLM's bug), pass each reference caption as one string."
        )
    bootstrap = {k: (np.asarray(per_clip[k])[:, None], mean(0)) for k in MEAN_METRICS if k in per_clip}
    versions = library_versions("aac-metrics", "pycocoevalcap")
    versions["java"] = setup.java_version
    return MetricResult(
        family="caption",
        profile=profile,
        language="en",
        n=len(predictions),
        values=values,
        units=dict.fromkeys(values, "score"),
        primary="spider" if "spider" in values else "cider_d",
        higher_is_better=True,
        bootstrap=bootstrap,
        per_example=per_clip,
        not_computed=not_computed,
        details={
            "timing": {k: round(v, 3) for k, v in timing.items()},
            "jar_cache": str(setup.cache_path),
            "references_per_clip": sorted({len(r) for r in refs}),
        },
        notes=notes,
        versions=versions,
        provenance={"anchor": ANCHORS[profile], "tokenizer": "PTB tokenizer (Stanford CoreNLP 3.4.1)"},
    )


FAMILY = MetricFamily(
    "caption",
    compute,
    PROFILES,
    "BLEU-1..4, METEOR, ROUGE-L, CIDEr-D; SPICE and SPIDEr when SPICE can run",
    reference=lambda ex: ex.references,  # every reference caption of the clip
    headline=("cider_d", "spice", "spider", "meteor"),
    chance="most frequent caption",
    multi_reference=True,
)
