"""The few calls self-training makes into qaudio's inference, training and evaluation.

Every use of those APIs by :mod:`qaudio.selftrain` goes through the functions here, so a
rename below (the inference wrapper, the evaluation entry point, the training config) is
fixed in this one file:

- :func:`load_model`: a saved model directory -> the inference wrapper;
- :func:`transcribe`: clips -> transcripts (greedy or beam search), batched, with the
  degeneration flags inference attaches;
- :func:`score`: log p(text + eos | audio, prompt) of given transcripts, through the exact
  label-scoring path inference uses for label sets (one "label" per clip: its transcript);
- :func:`train_round`: fine-tune a saved model on a manifest (resumes from the run's
  checkpoints);
- :func:`evaluate_dev`: the dev manifest scored with the task's metric profile and 95%
  bootstrap intervals; the report is written beside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..infer import Pipeline

import numpy as np

TASK = "asr"  # self-training produces transcripts


@dataclass
class Transcript:
    text: str  # the parsed answer (tags removed)
    flags: list[str]  # degeneration / no-speech flags from inference
    error: str | None  # a clip that could not be read


def load_model(model_dir: str | Path, device: str | None = None, max_new_tokens: int | None = None) -> Pipeline:
    """The inference wrapper of a saved model (float32: batched equals one-by-one)."""
    from ..infer import load

    return load(str(model_dir), device=device, dtype="float32", max_new_tokens=max_new_tokens)  # None: the task's cap


def transcribe(
    model: Pipeline, clips: Sequence[str], num_beams: int = 1, lang: str = "en", batch_size: int = 16
) -> list[Transcript]:
    """Transcribe audio files (each within the encoder window) with greedy (1) or beam search."""
    from ..specs import get_task

    kwargs = {"num_beams": num_beams} if num_beams > 1 else {}
    query = get_task(TASK).request(lang, generate_kwargs=kwargs)
    out: list[Transcript] = []
    for k in range(0, len(clips), batch_size):
        for r in model.run(list(clips[k : k + batch_size]), query, batch_size=batch_size):
            out.append(Transcript(r.text, list(r.flags), r.error))
    return out


def score(
    model: Pipeline, clips: Sequence[str], texts: Sequence[str], lang: str = "en", batch_size: int = 16
) -> list[tuple[float, int]]:
    """(sum of token log-probabilities of ``text`` + end token, token count) per clip.

    The sum is inference's exact label likelihood (the audio tower once per clip, the LLM once
    per (clip, text)); the count is the same target's tokens, so sum / count is the mean token
    log-probability. Empty texts get (-inf, 1): nothing was recognised, nothing is trusted.
    """
    import torch

    from ..audio import load_audio
    from ..chunking import Window
    from ..infer import _Window
    from ..specs import get_task

    if len(clips) != len(texts):
        raise ValueError(f"score got {len(clips)} clips but {len(texts)} texts")
    out: list[tuple[float, int]] = [(-np.inf, 1)] * len(clips)
    todo = [i for i, t in enumerate(texts) if t.strip()]
    with torch.inference_mode():
        for k in range(0, len(todo), batch_size):
            idx = todo[k : k + batch_size]
            windows = []
            for i in idx:
                samples = load_audio(clips[i], allow_silence=True).samples
                request = get_task(TASK).request(lang, labels=[texts[i]])
                windows.append(_Window(i, Window(0, len(samples)), samples, request, model.prompt(request)))
            logps = model._score(windows, batch_size)  # inference's label-set scoring: (1,) per window
            for i, lp in zip(idx, logps, strict=True):
                out[i] = (float(lp[0]), target_tokens(model, texts[i]))
    return out


def target_tokens(model: Pipeline, text: str) -> int:
    """Tokens the scored target holds: the text's tokens and the end token."""
    return len(model.tokenizer(text, add_special_tokens=False)["input_ids"]) + 1


def train_round(init_model: str | Path, manifest: str | Path, out_dir: str | Path, **train_options: Any) -> Path:
    """Fine-tune ``init_model`` on ``manifest`` (asr); returns the final model directory.

    ``out_dir`` is the training run folder: a run interrupted in it resumes from its latest
    checkpoint. ``train_options`` are TrainConfig fields (max_steps, lr, batch_size, ...).
    """
    from ..train import train
    from ..training.config import TrainConfig

    cfg = TrainConfig(
        **{
            "model": str(init_model),
            "recipes": f"manifest:{Path(manifest).resolve()}",
            "tasks": TASK,
            "dev_split": "none",
            "output_dir": str(out_dir),
            "resume": "auto",
            "tensorboard": False,
            "plot": False,
            "eta": False,
            **train_options,
        }
    )
    return Path(train(cfg))


@dataclass
class DevScore:
    metric: str  # the headline metric's name (wer for English)
    value: float  # in the metric's units (percent for error rates)
    low: float | None  # 95% bootstrap interval
    high: float | None
    n: int  # examples scored


def evaluate_dev(
    model_dir: str | Path,
    dev_manifest: str | Path,
    out_dir: str | Path,
    batch_size: int = 16,
    bootstrap: int = 1000,
    max_new_tokens: int | None = None,
) -> DevScore:
    """Score ``model_dir`` on the dev manifest; write report.json/.md/.html into ``out_dir``."""
    from ..evaluate import EvalConfig, evaluate, manifest_suite
    from ..report import MODEL, write_report

    cfg = EvalConfig(
        model=str(model_dir),
        manifest=str(dev_manifest),
        batch_size=batch_size,
        peers=False,
        bootstrap=bootstrap,
        quiet=True,
        max_new_tokens=max_new_tokens,
        out=str(out_dir),
    )
    report = evaluate(manifest_suite(dev_manifest), cfg)
    write_report(report, out_dir)
    entries = [b for b in report["benchmarks"] if b["task"] == TASK and b["status"] == "ok"]
    if not entries:
        raise ValueError(f"dev manifest {dev_manifest} has no usable {TASK} examples to measure a round on")
    metric = entries[0]["results"][MODEL]["metric"]
    name = metric["primary"]
    low, high = (metric.get("ci95") or {}).get(name, (None, None))
    return DevScore(name, metric["values"][name], low, high, metric["n"])
