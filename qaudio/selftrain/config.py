"""The self-training configuration: one dataclass; ``qaudio self-train``'s flags are its fields.

This module imports no torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DECODES = ("greedy", "beam")


def _f(default: Any, help: str, choices: tuple | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class SelfTrainConfig:
    # ---- inputs and outputs
    model: str = _f("", "the saved model directory to start from (round 0)")
    unlabeled: str = _f(
        "", "the unlabeled audio: a folder of audio files, or a .jsonl manifest whose transcripts are ignored"
    )
    dev: str = _f("", "dev manifest (.jsonl with transcripts): every round is measured on it")
    out: str = _f("runs/self-train", "run folder: one round-N folder per round, rounds.md, best.json")
    text: str | None = _f(
        None, "domain text file, one sentence per line, spoken by the synthesis besides the kept pseudo-labels"
    )
    labeled: str | None = _f(
        None,
        "labeled training corpora, as --recipes of qaudio train "
        "(NAME[:ROOT][@TRAIN[/DEV]],...); their asr examples join every round",
    )
    lang: str = _f("en", "language of the unlabeled speech")
    # ---- rounds
    rounds: int = _f(3, "rounds of pseudo-label, synthesize, retrain, measure")
    patience: int = _f(1, "stop after this many rounds in a row that do not improve the dev error rate")
    min_improvement: float = _f(
        0.0, "a round improves when it lowers the dev error rate by more than this (in the metric's units, percent)"
    )
    # ---- pseudo-labels
    max_clip_seconds: float = _f(25.0, "recordings longer than this are cut at pauses into clips")
    num_beams: int = _f(4, "beam width of the second decode (the first is greedy)")
    keep_decode: str = _f("beam", "which decode becomes the pseudo-label", choices=DECODES)
    min_logprob: float = _f(-1.0, "a pseudo-label's mean token log-probability (nats) must be at least this")
    min_agreement: float = _f(0.8, "1 - WER between the greedy and the beam decode must be at least this")
    keep_fraction: float = _f(1.0, "keep at most this fraction of the clips, the most likely first")
    max_new_tokens: int = _f(0, "generation cap per clip (0: inference's cap for transcripts)")
    infer_batch_size: int = _f(16, "clips per forward pass when decoding and scoring")
    # ---- synthesis
    synthesizer: str = _f(
        "matched-voices",
        "the synthesis step: matched-voices (offline voices fitted to the "
        "unlabeled audio's rate, pitch and noise), or none",
    )
    voices: str | None = _f(None, "comma-separated candidate eSpeak voices (default: every qaudio voice of --lang)")
    max_voices: int = _f(3, "voices kept for synthesis, the best-matching first")
    synth_copies: int = _f(1, "synthetic versions of each domain sentence")
    max_synth_sentences: int = _f(0, "at most this many domain sentences per round (0: all)")
    workers: int = _f(1, "synthesis processes")
    # ---- retraining
    weight_labeled: float = _f(1.0, "times each labeled example is seen per pass (fractions subsample)")
    weight_pseudo: float = _f(1.0, "times each pseudo-labeled example is seen per pass")
    weight_synthetic: float = _f(1.0, "times each synthetic example is seen per pass")
    train_steps: int = _f(200, "optimizer steps per round")
    batch_size: int = _f(16, "training examples per micro-batch")
    lr: float = _f(3e-4, "peak learning rate of each round's fine-tuning")
    precision: str = _f("fp32", "training precision (fp32, bf16, fp16, auto)", choices=("auto", "fp32", "bf16", "fp16"))
    threads: int = _f(0, "torch CPU threads (0: all cores)")
    save_every: int = _f(50, "checkpoint every N steps: an interrupted round resumes from the latest")
    train_config: str | None = _f(None, "YAML file of further qaudio train options for every round")
    # ---- measuring
    bootstrap: int = _f(1000, "bootstrap resamples for the dev error rate's 95%% interval")
    device: str | None = _f(None, "cpu, cuda, ... for decoding and evaluation (default: cuda if available)")
    seed: int = _f(0, "seed of the synthesis, subsampling and training")
    progress: bool = _f(True, "print what each step does")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"--{flag(f.name)} is {getattr(self, f.name)!r}; valid choices: {', '.join(choices)}")
        for name in ("model", "unlabeled", "dev"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")
        for name in (
            "rounds",
            "patience",
            "num_beams",
            "infer_batch_size",
            "max_voices",
            "synth_copies",
            "workers",
            "train_steps",
            "batch_size",
            "save_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"--{flag(name)} must be at least 1, got {getattr(self, name)}")
        for name in (
            "weight_labeled",
            "weight_pseudo",
            "weight_synthetic",
            "max_new_tokens",
            "max_synth_sentences",
            "min_improvement",
            "threads",
            "bootstrap",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"--{flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.max_clip_seconds <= 0 or self.max_clip_seconds > 30:
            raise ValueError(
                f"--max-clip-seconds must be in (0, 30] (the encoder's window), got {self.max_clip_seconds}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def flag(name: str) -> str:
    return name.replace("_", "-")
