"""Qwen-Audio's benchmark list for a Qwen2-Audio model, in its own prompts and scoring conventions.

The same corpora, splits and tasks as :mod:`eval_suites.qwen_audio`, for a model imported with
``qaudio import-model qwen2-audio`` (or fine-tuned from one): every prompt is written in the
model's own ``prompt_style`` (``chat`` for Qwen2-Audio-Instruct, ``natural`` for the base
model), which its saved config carries, so the model is asked as it was trained. Each row is
scored with its metric family's ``qwen2_audio`` profile where the family has one (Qwen2-Audio's
``eval_audio`` scripts: ASR with Whisper's normalisers, and whatever other families define),
else with the ``qwen_audio`` suite's profile, which Qwen2-Audio's scripts share for that row.
"""

from dataclasses import replace

from qaudio.metrics import get_metric
from qaudio.specs import get_task
from qaudio.suite import Benchmark, Suite

from .qwen_audio import SUITE as QWEN_AUDIO

PROFILE = "qwen2_audio"  # the profile name every metric family uses for Qwen2-Audio's conventions


def _scored_as_qwen2_audio(benchmark: Benchmark) -> Benchmark:
    family = get_metric(get_task(benchmark.task).metric)
    return replace(benchmark, profile=PROFILE) if PROFILE in family.profiles else benchmark


SUITE = Suite(
    name="qwen2_audio",
    description="Qwen-Audio's benchmarks (arXiv:2311.07919, Table 2) asked in a Qwen2-Audio model's own prompts, "
    "scored with Qwen2-Audio's metric profiles where defined.",
    benchmarks=tuple(_scored_as_qwen2_audio(b) for b in QWEN_AUDIO.benchmarks),
    peers=tuple(
        replace(
            peer,
            note=(
                "Whisper tiny.en (39 M parameters) with its own decoder, greedy, on the same audio, scored with the same "
                "qwen2_audio profile, which applies Whisper's English normaliser as Whisper's paper does."
            ),
        )
        for peer in QWEN_AUDIO.peers
    ),
)
