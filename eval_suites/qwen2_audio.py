"""Qwen-Audio's benchmark list for a Qwen2-Audio model, in its own prompts and its ASR conventions.

The same corpora, splits and tasks as :mod:`eval_suites.qwen_audio`, for a model imported with
``qaudio import-model qwen2-audio`` (or fine-tuned from one): every prompt is written in the
model's own ``prompt_style`` (``chat`` for Qwen2-Audio-Instruct, ``natural`` for the base
model), which its saved config carries, so the model is asked as it was trained. Speech
recognition is scored with the ``qwen2_audio`` WER profile (Qwen2-Audio's
``eval_audio/evaluate_asr.py``: Whisper's English normaliser, then the basic one; Chinese per
character); the other rows keep Qwen-Audio's conventions, which Qwen2-Audio's evaluation
scripts share (sacrebleu BLEU, COCO caption metrics, exact match).
"""
from dataclasses import replace

from qaudio.suite import Suite

from .qwen_audio import SUITE as QWEN_AUDIO

ASR_PROFILE = "qwen2_audio"  # the wer family's Qwen2-Audio profile (qaudio.metrics.wer)

SUITE = Suite(
    name="qwen2_audio",
    description="Qwen-Audio's benchmarks (arXiv:2311.07919, Table 2) asked in a Qwen2-Audio model's own prompts, "
                "ASR scored with Qwen2-Audio's normaliser.",
    benchmarks=tuple(replace(b, profile=ASR_PROFILE) if b.task == "asr" else b for b in QWEN_AUDIO.benchmarks),
    peers=tuple(replace(peer, note=(
        "Whisper tiny.en (39 M parameters) with its own decoder, greedy, on the same audio, scored with the same "
        "qwen2_audio profile, which applies Whisper's English normaliser as Whisper's paper does."))
        for peer in QWEN_AUDIO.peers),
)
