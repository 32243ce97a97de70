"""qaudio: train, run and evaluate multitask audio-language models.

A Whisper-style audio encoder feeds a trainable projector whose outputs fill audio slots in
the input of a causal LLM; prompts use Qwen-Audio's hierarchical task tags. ``qaudio.load``
is imported lazily so that ``import qaudio`` (and ``qaudio.tags``) do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hf_pipeline import AudioLMPipeline
    from .infer import Pipeline

__version__ = "0.1.0"


def load(
    model: str,
    device: str | None = None,
    dtype: str | None = None,
    max_new_tokens: int | None = None,
    quantize: str | None = None,
    **options: Any,
) -> Pipeline:
    """Load a trained model (a directory or hub id) as a :class:`qaudio.infer.Pipeline`, optionally
    quantized (``quantize``: int8, int4); ``options`` (batch_size, on_degenerate, detect_no_speech)
    go to it. See :mod:`qaudio.infer`."""
    from .infer import load as _load

    return _load(model, device=device, dtype=dtype, max_new_tokens=max_new_tokens, quantize=quantize, **options)


def pipeline(
    model: str | Pipeline, device: str | None = None, dtype: str | None = None, **defaults: Any
) -> AudioLMPipeline:
    """A transformers-style ASR pipeline over a qaudio model; see :mod:`qaudio.hf_pipeline`."""
    from .hf_pipeline import pipeline as _pipeline

    return _pipeline(model, device=device, dtype=dtype, **defaults)
