"""Inference: load a trained model and ask it about audio, through one request path (the
``qaudio run`` command is :mod:`qaudio.run`).

``qaudio.load(DIR)`` returns a :class:`Pipeline` (the model beside its request handling) whose
methods ask the built-in tasks (Qwen-Audio, arXiv:2311.07919, section 2.2): ``transcribe``,
``translate``, ``caption``, ``ask``, ``classify``, and ``generate`` for a raw prompt. Every
method takes one input or a list (batched), and returns :class:`~qaudio.result.Result` objects.

What is asked is a :class:`~qaudio.task.Request` (``Task.request``; ``Example.request`` for a
manifest example); its prompt comes from ``Task.prompt``, the code that writes training
prompts, in the model's ``prompt_style``. How requests run (:meth:`Pipeline.run`, shared by the
methods, evaluation and the server):

1. inputs are taken longest first; each is loaded as 16 kHz mono through
   :func:`qaudio.audio.load_audio` (bad input -> ``Result.error``) when its turn comes, and
   clips longer than the encoder window are split at quiet points (:mod:`qaudio.chunking`);
2. silence, and for a task that transcribes speech a window without speech (Silero VAD,
   :mod:`qaudio.vad`), is not asked about: a clip with nothing left is answered with empty
   text and the ``no_speech`` flag, as OpenAI's API answers it;
3. windows of like requests (same generation settings, or label scoring) gather into batches
   of ``batch_size``, the longest first. This is the one batching layer. In a batch the
   encoder runs in length-homogeneous sub-batches (:func:`length_groups`), so a short clip is
   not padded to the batch's longest, and the LLM runs once on the whole batch: free text
   through ``generate``; a label set (classification) by scoring each label's log-likelihood
   given the audio and prompt, which can only answer a valid label;
4. each window's output is parsed by its task spec (``Task.parse``), and the windows of a clip
   are stitched: texts joined, word times shifted by the window offset; every generated answer
   is checked for loops, echoes, cut-offs and non-text runs (:mod:`qaudio.degeneration`),
   listed in ``Result.flags``; with ``on_degenerate="retry"`` a flagged answer is decoded again
   with a repetition penalty and flagged ``retried``.

Batched results equal one-by-one results in float32 (left padding with an attention mask);
in bf16/fp16 greedy decoding may differ on near-ties.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import degeneration, vad
from .audio import Audio, AudioError, audio_duration, load_audio
from .chunking import Segment, Window, join_texts, shift_words, split_windows
from .data import Example
from .dtypes import torch_dtype
from .result import Result, Word
from .specs import get_task
from .task import ClassificationTask, Request, RequestError, Task

if TYPE_CHECKING:
    from .model import AudioLM

# caption(style=...) -> the output instruction tag.
CAPTION_STYLES = {"clotho": "caption_clotho", "audiocaps": "caption_audiocaps", "plain": "caption_plain"}
DEFAULT_BATCH_SIZE = 16  # windows per forward pass
# The encoder's sub-batches: each clip at least this share of its sub-batch's longest, so at most
# a fifth of the encoder's work is padding, whatever the batch size.
ENCODER_LENGTH_RATIO = 0.8

__all__ = ["Pipeline", "Request", "Result", "Word", "length_groups", "load"]


def length_groups(lengths: Sequence[int], ratio: float = ENCODER_LENGTH_RATIO) -> list[list[int]]:
    """Indices of ``lengths`` in length-homogeneous groups, longest first: a group takes the
    next-longest item while that item is at least ``ratio`` of the group's longest."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if groups and lengths[i] >= ratio * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


# One clip: a path, encoded bytes, (samples, sample_rate), or a loaded Audio; a list or tuple of them is a batch.
Inputs = Any


def _load_input(item: object, index: int | None) -> Audio:
    """One user input -> Audio; errors name the batch position for inputs without a path."""
    where = "" if index is None or isinstance(item, (str, os.PathLike)) else f"input {index}: "
    try:
        if isinstance(item, tuple) and _is_array_pair(item):
            return load_audio(item[0], sample_rate=int(item[1]), allow_silence=True)
        if isinstance(item, (str, os.PathLike, bytes, bytearray, Audio)):
            return load_audio(item, allow_silence=True)  # silence is answered (no_speech), not refused
        if isinstance(item, np.ndarray):
            raise AudioError("<array>: an audio array needs its sample rate; pass (array, sample_rate)")
        raise AudioError(
            f"unsupported audio input of type {type(item).__name__}; expected a path, bytes, "
            "(array, sample_rate) or qaudio.audio.Audio"
        )
    except AudioError as e:
        raise AudioError(f"{where}{e}") from None


def _duration_hint(item: object) -> float:
    """Seconds of an input before it is loaded (the file header for a path), to order the work;
    0 when it cannot be told cheaply (bytes, or a file that will fail to load)."""
    if isinstance(item, Audio):
        return item.duration
    if isinstance(item, tuple) and _is_array_pair(item):
        return len(item[0]) / float(item[1]) if item[1] else 0.0
    if isinstance(item, (str, os.PathLike)):
        try:
            return float(audio_duration(item))
        except Exception:  # a bad file is reported when it is loaded, with the loader's message
            return 0.0
    return 0.0


def _is_array_pair(x: tuple) -> bool:
    return (
        len(x) == 2
        and isinstance(x[1], (int, float))
        and not isinstance(x[1], bool)
        and not isinstance(x[0], (str, bytes))
    )


# ---- The pipeline ----------------------------------------------------------------------------


@dataclass
class _Window:
    """One encoder-sized piece of one input, with its place in the output."""

    item: int  # index of the input
    window: Window
    samples: np.ndarray  # (T,) 16 kHz
    request: Request
    prompt: str
    output: Any = None  # generated text, or (K,) label log-likelihoods
    seconds: float = 0.0  # this window's share of its batch's compute time


@dataclass
class _Clip:
    """An input being answered: its windows, and how many are still to run."""

    audio: Audio
    load_seconds: float
    no_speech: list[float | None]  # per window
    parts: list[_Window] = field(default_factory=list)  # the windows asked about
    pending: int = 0


class Pipeline:
    """A loaded model with task methods; ``model`` is the :class:`qaudio.model.AudioLM`."""

    def __init__(
        self,
        model: AudioLM,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_new_tokens: int | None = None,
        name: str = "model",
        on_degenerate: str = "keep",
        detect_no_speech: bool = True,
    ):
        if on_degenerate not in degeneration.ON_DEGENERATE:
            raise ValueError(
                f"unknown on_degenerate {on_degenerate!r}; valid choices: {', '.join(degeneration.ON_DEGENERATE)}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model.eval()
        self.processor = model.processor  # audio and text -> tensors, token ids -> text
        self.batch_size = batch_size  # windows per forward pass
        self.max_new_tokens = max_new_tokens  # None: the task's cap (Task.max_new_tokens)
        self.name = name  # what it was loaded from (reported by the server)
        self.on_degenerate = on_degenerate  # "retry": decode a degenerate answer again with a repetition penalty
        self.detect_no_speech = detect_no_speech  # transcription of a clip without speech (Silero VAD) -> empty text

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def style(self) -> str:
        return self.model.config.prompt_style

    @property
    def max_audio_seconds(self) -> float:
        return float(self.model.max_audio_seconds)

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def prompt(self, request: Request) -> str:
        """The prompt ``request`` sends to this model (in its prompt style)."""
        return request.prompt(self.style)

    # -- task methods: one input -> Result (a bad input raises AudioError); a list -> list[Result]

    def transcribe(
        self, audio: Inputs, lang: str | None = None, timestamps: bool = False, **generate_kwargs: Any
    ) -> Result | list[Result]:
        """Speech -> text in the spoken language; ``timestamps`` adds word start/end times."""
        return self._ask(audio, get_task("asr").request(lang, timestamps=timestamps, generate_kwargs=generate_kwargs))

    def translate(
        self, audio: Inputs, to: str = "en", lang: str | None = None, **generate_kwargs: Any
    ) -> Result | list[Result]:
        """Speech in ``lang`` -> text in ``to``."""
        return self._ask(audio, get_task("s2tt").request(lang, to, generate_kwargs=generate_kwargs))

    def caption(self, audio: Inputs, style: str = "clotho", **generate_kwargs: Any) -> Result | list[Result]:
        """A one-sentence description of the sound; ``style``: clotho, audiocaps or plain."""
        if style not in CAPTION_STYLES:
            raise ValueError(f"unknown caption style {style!r}; valid choices: {', '.join(CAPTION_STYLES)}")
        return self._ask(
            audio, get_task("aac").request(instruction=CAPTION_STYLES[style], generate_kwargs=generate_kwargs)
        )

    def ask(
        self, audio: Inputs, question: str, lang: str | None = None, **generate_kwargs: Any
    ) -> Result | list[Result]:
        """Audio question answering: a free-form answer to ``question`` about the audio."""
        return self._ask(audio, get_task("aqa").request(lang, question=question, generate_kwargs=generate_kwargs))

    def classify(
        self,
        audio: Inputs,
        task: str | Task = "emotion",
        labels: Sequence[str] | None = None,
        **generate_kwargs: Any,
    ) -> Result | list[Result]:
        """One label: ``task`` is emotion, scene, vocal or note (a task's alias), a task name such
        as ``ser``, or a Task.

        The label is the most likely of ``labels`` (default: the task's label set), scored
        exactly; a task without a label set (note) generates its answer.
        """
        spec = get_task(task) if isinstance(task, str) else task
        if labels is None and isinstance(spec, ClassificationTask):
            labels = spec.labels or None
        return self._ask(audio, spec.request(labels=labels, generate_kwargs=generate_kwargs))

    def generate(self, audio: Inputs, prompt: str, **generate_kwargs: Any) -> Result | list[Result]:
        """The answer to a raw prompt (tags and all), e.g. from ``qaudio prompt``."""
        return self._ask(audio, Request.raw(prompt, generate_kwargs))

    def _ask(self, audio: Inputs, request: Request) -> Result | list[Result]:
        if isinstance(audio, list) or (isinstance(audio, tuple) and not _is_array_pair(audio)):
            return self.run(list(audio), request)
        return self.run([audio], request, raise_errors=True)[0]

    # -- evaluation

    def run_examples(
        self,
        examples: list[Example],
        task: Task,
        batch_size: int | None = None,
        labels: Sequence[str] | None = None,
        progress: bool = True,
        **generate_kwargs: Any,
    ) -> list[Result]:
        """Answer manifest examples (each asked as ``example.request(task)``), in input order.

        ``labels`` constrains each answer to that label set. A bad audio file gives a Result
        with ``error`` set; the others are still answered.
        """
        requests = [ex.request(task, labels=labels, generate_kwargs=generate_kwargs) for ex in examples]
        return self.run(
            [ex.audio for ex in examples],
            requests,
            batch_size=batch_size,
            progress=f"{task.name}" if progress else None,
        )

    # -- the engine

    def run(
        self,
        audios: Sequence,
        requests: Request | Sequence[Request],
        batch_size: int | None = None,
        raise_errors: bool = False,
        progress: str | None = None,
    ) -> list[Result]:
        """Answer ``requests[i]`` about ``audios[i]`` (one request may serve all), batched.

        A bad input gives a Result with ``error`` set and does not stop the others (with
        ``raise_errors``, its AudioError is raised instead). ``progress``: a label for a
        progress bar over the inputs (None: no bar).
        """
        audios = list(audios)
        requests = [requests] * len(audios) if isinstance(requests, Request) else list(requests)
        if len(requests) != len(audios):
            raise ValueError(f"got {len(audios)} audio inputs but {len(requests)} requests")
        results = self._run(audios, requests, batch_size or self.batch_size, raise_errors, progress)
        if self.on_degenerate == "retry":
            self._retry(audios, requests, results, batch_size or self.batch_size)
        return results

    def _run(
        self, audios: list, requests: list[Request], batch_size: int, raise_errors: bool, progress: str | None
    ) -> list[Result]:
        from tqdm.auto import tqdm

        results: list[Result | None] = [None] * len(audios)
        clips: dict[int, _Clip] = {}
        prompts = {r: self.prompt(r) for r in set(requests)}
        pending: dict[tuple, list[_Window]] = {}  # batch key -> windows waiting for a batch
        order = sorted(range(len(audios)), key=lambda i: -_duration_hint(audios[i]))  # longest first
        with tqdm(total=len(audios), disable=progress is None, desc=progress, unit="ex") as bar:
            for i in order:
                request = requests[i]
                t0 = time.perf_counter()
                try:
                    audio = _load_input(audios[i], None if raise_errors else i)
                except AudioError as e:
                    if raise_errors:
                        raise
                    results[i] = Result(text="", task=request.name, language=request.language, error=str(e))
                    bar.update(1)
                    continue
                clip = clips[i] = self._windows(i, audio, time.perf_counter() - t0, request, prompts[request])
                if not clip.parts:
                    results[i] = self._finish(clip, request)
                    bar.update(1)
                    continue
                waiting = pending.setdefault(self._batch_key(request), [])
                waiting += clip.parts
                while len(waiting) >= batch_size:
                    bar.update(self._execute(waiting, batch_size, clips, requests, results))
            for waiting in pending.values():
                while waiting:
                    bar.update(self._execute(waiting, batch_size, clips, requests, results))
        return results  # type: ignore[return-value]

    def _windows(self, i: int, audio: Audio, load_seconds: float, request: Request, prompt: str) -> _Clip:
        """The clip's windows; a window without speech (silence; for transcription, no speech) is not asked about."""
        windows = split_windows(audio.samples, self.max_audio_seconds)
        pieces = [audio.samples[w.start : w.end] for w in windows]
        no_speech = vad.no_speech_probs(pieces, use_vad=self.detect_no_speech and request.transcribes_speech)
        parts = [
            _Window(i, w, x, request, prompt)
            for w, x, p in zip(windows, pieces, no_speech, strict=True)
            if not vad.is_no_speech(p)
        ]
        return _Clip(audio, load_seconds, no_speech, parts, pending=len(parts))

    def _batch_key(self, request: Request) -> tuple:
        # A batch shares its generation settings (the cap included, so a request's answer never
        # depends on what it was batched with); label scoring generates nothing.
        return ("score", ()) if request.labels else ("generate", self._generate_kwargs(request))

    def _execute(
        self, waiting: list[_Window], batch_size: int, clips: dict[int, _Clip], requests: list[Request], results: list
    ) -> int:
        """Run the longest ``batch_size`` waiting windows as one batch (removed from ``waiting``);
        finish the clips whose last window this was. Returns how many clips finished."""
        import torch

        waiting.sort(key=lambda w: -len(w.samples))
        batch = waiting[:batch_size]
        del waiting[:batch_size]
        t0 = time.perf_counter()
        outputs: list[np.ndarray] | list[str]  # label scores, or generated texts
        with torch.inference_mode():
            if batch[0].request.labels:
                outputs = self._score(batch, batch_size)
            else:
                outputs = self._generate(batch, dict(self._generate_kwargs(batch[0].request)))
        share = (time.perf_counter() - t0) / len(batch)
        finished = 0
        for w, out in zip(batch, outputs, strict=True):
            w.output, w.seconds = out, share
            clip = clips[w.item]
            clip.pending -= 1
            if clip.pending == 0:
                results[w.item] = self._finish(clip, requests[w.item])
                del clips[w.item]  # its samples are no longer needed
                finished += 1
        return finished

    def _finish(self, clip: _Clip, request: Request) -> Result:
        """The clip's Result from its answered windows (or its no-speech answer)."""
        parts = clip.parts
        if parts:
            result = _stitch(request, parts)
            result.flags = self._flags(request, parts, result)
        else:
            result = Result(text="", task=request.name, language=request.language, flags=["no_speech"])
        # The clip's speech is its most speech-like window's.
        known = [p for p in clip.no_speech if p is not None]
        result.no_speech_prob = min(known) if len(known) == len(clip.no_speech) else None
        result.timing = {
            "audio_seconds": round(clip.audio.duration, 3),
            "windows": len(parts),
            "seconds": round(sum(p.seconds for p in parts), 4),
            "load_seconds": round(clip.load_seconds, 4),
            "generated_tokens": self._generated_tokens(request, parts),
        }
        return result

    def _generated_tokens(self, request: Request, parts: list[_Window]) -> int | None:
        """Tokens generated for the clip (None: label scoring, or a stand-in without a tokenizer)."""
        if request.labels or self.tokenizer is None:
            return None
        return sum(len(self.tokenizer(p.output, add_special_tokens=False)["input_ids"]) for p in parts)

    def _flags(self, request: Request, parts: list[_Window], result: Result) -> list[str]:
        """Degeneration flags of a generated answer (a label chosen from a set cannot degenerate)."""
        if request.labels:
            return []
        cap = dict(self._generate_kwargs(request))["max_new_tokens"]
        tokens = None  # a stand-in model without a tokenizer cannot tell a cut-off answer
        if self.tokenizer is not None:
            tokens = max(len(self.tokenizer(p.output, add_special_tokens=False)["input_ids"]) for p in parts)
        return degeneration.detect(
            result.text, result.raw, parts[0].prompt, generated_tokens=tokens, max_new_tokens=cap
        )

    def _retry(self, audios: list, requests: list[Request], results: list[Result], batch_size: int) -> None:
        """Decode degenerate answers again with a repetition penalty; mark them ``retried``."""
        redo = [i for i, r in enumerate(results) if r.ok and degeneration.retryable(r.flags)]
        if not redo:
            return
        retry_requests = [
            replace(
                requests[i],
                generate_kwargs=tuple(
                    sorted({**dict(requests[i].generate_kwargs), **degeneration.RETRY_GENERATE_KWARGS}.items())
                ),
            )
            for i in redo
        ]
        with warnings.catch_warnings():  # "the penalty applies to new tokens only": what is wanted here
            warnings.filterwarnings("ignore", message=r"Passing `(repetition_penalty|no_repeat_ngram_size)`")
            again_results = self._run([audios[i] for i in redo], retry_requests, batch_size, False, None)
        for i, again in zip(redo, again_results, strict=True):
            again.flags = [f for f in degeneration.FLAGS if f in {*again.flags, "retried"}]
            again.timing["seconds"] = round(again.timing.get("seconds", 0.0) + results[i].timing.get("seconds", 0.0), 4)
            results[i] = again

    def _to_device(self, batch: dict) -> dict:
        device = self.device
        return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}

    def _generate_kwargs(self, request: Request) -> tuple:
        kwargs = dict(request.generate_kwargs)
        kwargs.setdefault("max_new_tokens", self.max_new_tokens or request.max_new_tokens())
        return tuple(sorted(kwargs.items()))

    def _encode(self, batch: list[_Window]) -> list:
        """Encoder states of every window, (T'_i, D_enc) each: the encoder runs on length-homogeneous
        sub-batches, so no clip is padded to much more than its own length."""
        from .model.processor import audio_inputs  # with second towers, their inputs too

        states: list = [None] * len(batch)
        for group in length_groups([len(w.samples) for w in batch]):
            inputs = self._to_device(
                self.processor.prepare([batch[i].samples for i in group], [batch[i].prompt for i in group])
            )
            encoded, lengths = self.model.encode(**audio_inputs(inputs))  # (b, T', D), (b,)
            for j, i in enumerate(group):
                states[i] = encoded[j, : int(lengths[j])]
        return states

    def _generate(self, batch: list[_Window], kwargs: dict) -> list[str]:
        inputs = self.processor.prepare_from_features(self._encode(batch), [w.prompt for w in batch])
        return self.processor.batch_decode(self.model.generate(self._to_device(inputs), **kwargs))

    def _score(self, batch: list[_Window], pairs_per_pass: int) -> list[np.ndarray]:
        """log p(label + eos | audio, prompt) for every label of every window: (K,) each.

        The audio tower runs once per window; the LLM runs once per (window, label) pair,
        reusing the encoder states.
        """
        states = self._encode(batch)
        pairs = [(j, label) for j, w in enumerate(batch) for label in w.request.labels or ()]
        logp = np.empty(len(pairs), dtype=np.float64)
        for k in range(0, len(pairs), pairs_per_pass):
            chunk = pairs[k : k + pairs_per_pass]
            feats = self._to_device(
                self.processor.prepare_from_features(
                    [states[j] for j, _ in chunk], [batch[j].prompt for j, _ in chunk], [label for _, label in chunk]
                )
            )
            out = self.model(**feats)  # loss_sum: (P,) summed NLL over each target's tokens
            logp[k : k + len(chunk)] = (-out.loss_sum.float()).cpu().numpy()  # sum log p: exact likelihood
        outputs, k = [], 0
        for w in batch:
            outputs.append(logp[k : k + len(w.request.labels or ())])
            k += len(w.request.labels or ())
        return outputs


def _stitch(request: Request, parts: list[_Window]) -> Result:
    """One Result from the windows of one clip (in time order)."""
    parts = sorted(parts, key=lambda p: p.window.start)
    many = len(parts) > 1
    if request.labels:
        # Windows are independent evidence: add their log-likelihoods, pick the best label.
        total = np.sum([p.output for p in parts], axis=0)
        best = int(np.argmax(total))
        probs = np.exp(total - total.max())
        probs /= probs.sum()
        label = request.labels[best]
        return Result(
            text=label,
            task=request.name,
            raw=label,
            label=label,
            language=request.language,
            scores={lab: round(float(p), 6) for lab, p in zip(request.labels, probs, strict=True)},
            segments=[
                Segment(round(p.window.offset, 3), round(p.window.offset + p.window.duration, 3), label) for p in parts
            ],
        )
    answers = [request.parse(p.output) for p in parts]
    problems = [
        f"window {k} ({parts[k].window.offset:.2f} s): {msg}" if many else msg
        for k, answer in enumerate(answers)
        for msg in answer.problems
    ]
    segments = [
        Segment(round(p.window.offset, 3), round(p.window.offset + p.window.duration, 3), answer.text)
        for p, answer in zip(parts, answers, strict=True)
    ]
    words = None
    if any(answer.words is not None for answer in answers):
        words = [
            Word(w, float(s), float(e))
            for p, answer in zip(parts, answers, strict=True)
            for w, s, e in shift_words([(x.word, x.start, x.end) for x in answer.words or []], p.window.offset)
        ]
    voted: str | None = None
    if isinstance(request.task, ClassificationTask):
        votes = Counter(answer.label for answer in answers if answer.label)
        voted = votes.most_common(1)[0][0] if votes else ""
        text = voted
    else:
        text = join_texts([answer.text for answer in answers], request.language)
    return Result(
        text=text,
        task=request.name,
        raw=" ".join(p.output for p in parts),
        words=words,
        label=voted,
        language=request.language,
        segments=segments,
        problems=problems,
    )


def load(
    model: str,
    device: str | None = None,
    dtype: str | None = None,
    max_new_tokens: int | None = None,
    quantize: str | None = None,
    **options: Any,
) -> Pipeline:
    """Load a saved model (a directory from ``save_pretrained``, or a hub id) for inference.

    ``device``: default cuda when available, else cpu. ``dtype``: float32 (default: batched
    results then equal one-by-one results), bfloat16 or float16. ``max_new_tokens``: the
    generation cap (default: each task's). ``quantize``: int8 or int4 for the LLM's Linear
    layers with the device's default backend (:mod:`qaudio.model.quantize`). Other options
    (``batch_size``, ``on_degenerate``, ``detect_no_speech``) go to :class:`Pipeline`.
    """
    import torch

    from .model import AudioLM

    torch_type = torch_dtype(dtype or "float32")  # an unknown name raises before anything loads
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    lm = AudioLM.from_pretrained(str(model), device=device, dtype=torch_type)
    if quantize is not None:
        from .model.quantize import quantize as quantize_model

        quantize_model(lm, quantize)
    return Pipeline(lm, name=str(model), max_new_tokens=max_new_tokens, **options)


def request_from_fields(
    task: Task | None,
    prompt: str | None = None,
    lang: str | None = None,
    to: str | None = None,
    timestamps: bool = False,
    question: str | None = None,
    caption_style: str = "clotho",
    labels: str | None = None,
    generate_kwargs: dict | None = None,
) -> Request:
    """A Request from the fields of ``qaudio run`` and the server's ``/v1/generate``: a raw
    ``prompt``, or ``task`` with options; ``labels`` comma-separated (default: a
    classification task's label set); ``caption_style`` picks a caption task's instruction."""
    if prompt:
        return Request.raw(prompt, generate_kwargs)
    if task is None:
        raise RequestError("give a task or a raw prompt")
    label_set = [x.strip() for x in labels.split(",")] if labels else None
    if label_set is None and isinstance(task, ClassificationTask):
        label_set = list(task.labels) or None
    if caption_style not in CAPTION_STYLES:
        raise RequestError(f"unknown caption_style {caption_style!r}; valid choices: {', '.join(CAPTION_STYLES)}")
    instruction = CAPTION_STYLES[caption_style] if task.tag_path.task == "caption" else None
    return task.request(
        lang,
        to,
        timestamps=timestamps,
        question=question,
        instruction=instruction,
        labels=label_set,
        generate_kwargs=generate_kwargs,
    )
