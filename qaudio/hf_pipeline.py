"""``qaudio.pipeline(MODEL)``: a qaudio model behind the call signature of transformers' ASR pipeline.

Code written for ``transformers.pipeline("automatic-speech-recognition", ...)``
(``AutomaticSpeechRecognitionPipeline.__call__``) runs unchanged:

- inputs: a path or URL-free file name, bytes, a 1-D array at 16 kHz, a dict
  ``{"raw" | "array": array, "sampling_rate": int}``, or a list of these (a list answers a list);
- ``return_timestamps``: False (``{"text"}``), ``"word"`` (``chunks`` of
  ``{"text": word, "timestamp": (start, end)}``) or True (one chunk per stretch of the answer);
- ``chunk_length_s``: the longest piece audio is cut into (at most the encoder's window). As
  in qaudio's long-audio path, cuts go in pauses (:mod:`qaudio.chunking`), so pieces need no
  overlap: ``stride_length_s`` is accepted and has nothing to do;
- ``batch_size``: pieces per forward pass; ``generate_kwargs``: ``language`` (``"en"`` or
  ``"english"``), ``task`` (``"transcribe"`` or ``"translate"``), ``max_new_tokens``, and
  other ``generate`` options.

Answers equal ``qaudio.load(MODEL).transcribe(...)`` on the same audio (each piece is one of
its windows); the pipeline only reshapes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import SAMPLE_RATE, Audio, AudioError, load_audio
from .chunking import SEARCH_SECONDS, is_silent, join_texts, shift_words, split_windows
from .tags import LANGUAGES

if TYPE_CHECKING:
    from .infer import Pipeline

TIMESTAMP_MODES = (False, True, "word")


class AudioLMPipeline:
    """Callable like ``AutomaticSpeechRecognitionPipeline``; ``model`` is a loaded :class:`qaudio.infer.Pipeline`."""

    task = "automatic-speech-recognition"

    def __init__(
        self,
        model: Pipeline,
        chunk_length_s: float | None = None,
        batch_size: int | None = None,
        **generate_kwargs: Any,
    ):
        self.model = model
        self.defaults: dict[str, Any] = {
            "chunk_length_s": chunk_length_s,
            "batch_size": batch_size,
            "generate_kwargs": generate_kwargs,
        }

    def __call__(
        self,
        inputs: Any,
        return_timestamps: bool | str = False,
        chunk_length_s: float | None = None,
        stride_length_s: Any = None,
        batch_size: int | None = None,
        generate_kwargs: dict | None = None,
        **kwargs: Any,
    ) -> dict | list[dict]:
        if return_timestamps not in TIMESTAMP_MODES:
            raise ValueError(
                f"return_timestamps must be False, True or 'word', got {return_timestamps!r} "
                "(character timestamps are not predicted by this model)"
            )
        chunk = chunk_length_s or self.defaults["chunk_length_s"] or self.model.max_audio_seconds
        if not 0 < chunk <= self.model.max_audio_seconds:
            raise ValueError(
                f"chunk_length_s must be in (0, {self.model.max_audio_seconds:g}] (the encoder's window), got {chunk}"
            )
        options = {**self.defaults["generate_kwargs"], **(generate_kwargs or {}), **kwargs}
        language = _language(options.pop("language", None))
        task = options.pop("task", "transcribe")
        if task not in ("transcribe", "translate"):
            raise ValueError(f"generate_kwargs task must be 'transcribe' or 'translate', got {task!r}")
        from .specs import get_task

        if task == "translate":
            if return_timestamps:
                raise ValueError("timestamps are predicted for transcription only, not translation")
            query = get_task("s2tt").request(language, "en", generate_kwargs=options)
        else:
            query = get_task("asr").request(language, timestamps=return_timestamps == "word", generate_kwargs=options)
        many = isinstance(inputs, list)
        clips = [_audio(x) for x in (inputs if many else [inputs])]
        # Each clip cut into pieces of at most `chunk` s (one piece when it fits); pieces of all clips run batched.
        pieces = []
        for i, c in enumerate(clips):
            windows = split_windows(c.samples, chunk, search_seconds=min(SEARCH_SECONDS, chunk / 2))
            # As in Pipeline.run: a silent stretch of a long clip is not asked about.
            pieces += [(i, w) for w in windows if len(windows) == 1 or not is_silent(c.samples[w.start : w.end])]
        results = self.model.run(
            [Audio(clips[i].samples[w.start : w.end], clips[i].source) for i, w in pieces],
            query,
            batch_size=batch_size or self.defaults["batch_size"],
        )
        answers = []
        for i in range(len(clips)):
            mine = [(w, r) for (j, w), r in zip(pieces, results, strict=True) if j == i]
            for _, r in mine:
                if r.error:
                    raise AudioError(r.error)
            answer: dict[str, Any] = {"text": join_texts([r.text for _, r in mine], query.language)}
            if return_timestamps == "word":
                answer["chunks"] = [
                    {"text": w, "timestamp": (s, e)}
                    for win, r in mine
                    for w, s, e in shift_words([(x.word, x.start, x.end) for x in r.words or []], win.offset)
                ]
            elif return_timestamps:
                answer["chunks"] = [
                    {"text": seg.text, "timestamp": (round(seg.start + win.offset, 3), round(seg.end + win.offset, 3))}
                    for win, r in mine
                    for seg in r.segments
                    if seg.text
                ]
            answers.append(answer)
        return answers if many else answers[0]


def _language(value: str | None) -> str | None:
    """``"en"``, ``"english"`` or ``"<|en|>"`` -> ``"en"`` (the forms transformers' Whisper accepts)."""
    if value is None:
        return None
    code = value.strip("<|>").lower()
    by_name = {name.lower(): c for c, name in LANGUAGES.items()}
    code = by_name.get(code, code)
    if code not in LANGUAGES:
        raise ValueError(f"unsupported language {value!r}; valid choices: {', '.join(LANGUAGES)}")
    return code


def _audio(x: Any) -> Audio:
    if isinstance(x, dict):
        array = x.get("raw", x.get("array"))
        if array is None or "sampling_rate" not in x:
            raise AudioError(
                "a dict input needs 'raw' (or 'array') and 'sampling_rate', as transformers' pipeline takes"
            )
        return load_audio(np.asarray(array), sample_rate=int(x["sampling_rate"]))
    if isinstance(x, np.ndarray):
        return load_audio(x, sample_rate=SAMPLE_RATE)  # transformers: an array is at the feature extractor's rate
    return load_audio(x)


def pipeline(
    model: str | Pipeline, device: str | None = None, dtype: str | None = None, **defaults: Any
) -> AudioLMPipeline:
    """``qaudio.pipeline("runs/demo/model")``: a path or hub id (or a loaded model) -> an ASR pipeline."""
    if isinstance(model, str):
        from .infer import load

        model = load(model, device=device, dtype=dtype)
    return AudioLMPipeline(model, **defaults)
