"""Inference: load a trained model, ask it about audio, and the ``qaudio run`` command.

``qaudio.load(DIR)`` returns an :class:`AudioModel` whose methods build the tagged prompt for
the user (Qwen-Audio, arXiv:2311.07919, section 2.2): ``transcribe``, ``translate``,
``caption``, ``ask``, ``classify``, and ``generate`` for a raw prompt. Every method takes one
input or a list (batched), and returns :class:`Result` objects.

How a request runs (:meth:`AudioModel.run`, shared by the methods, evaluation and the server):

1. audio -> 16 kHz mono through :func:`qaudio.audio.load_audio` (bad input -> ``Result.error``);
2. clips longer than the encoder window are split at quiet points (:mod:`qaudio.chunking`);
3. windows are sorted by length and batched: free text through ``AudioLM.generate``; a label
   set (classification) by scoring each label's log-likelihood given the audio and prompt and
   taking the argmax, which can only answer a valid label;
4. each window's output is parsed by its task spec (``Task.parse``), and the windows of a clip
   are stitched: texts joined, word times shifted by the window offset;
5. silence, and for transcription a clip without speech (Silero VAD, :mod:`qaudio.vad`), is
   answered with empty text and the ``no_speech`` flag, as OpenAI's API answers it; every
   generated answer is checked for loops, echoes, cut-offs and non-text runs
   (:mod:`qaudio.degeneration`), listed in ``Result.flags``; with ``on_degenerate="retry"`` a
   flagged answer is decoded again with a repetition penalty and flagged ``retried``.

Prompts come from the task specs (``Task.prompt`` on a request :class:`~qaudio.data.Example`),
the same code that writes training prompts, in the model's ``prompt_style``.
Batched results equal one-by-one results in float32 (left padding with an attention mask);
in bf16/fp16 greedy decoding may differ on near-ties.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from . import degeneration, vad
from .audio import Audio, AudioError, load_audio
from .chunking import Segment, Window, join_texts, shift_words, split_windows
from .data import Example
from .specs import get_task, registry
from .tags import LANGUAGES, TIMESTAMPS, TRANSCRIPTION_TAGS, UNKNOWN_LANGUAGE, parse_timestamped, strip_tags
from .task import ClassificationTask, Prediction, Task

# classify(task=...) accepts these friendly names as well as task names.
CLASSIFY_TASKS = {"emotion": "ser", "scene": "asc", "vocal": "vsc", "note": "mna"}
# caption(style=...) -> the output instruction tag.
CAPTION_STYLES = {"clotho": "caption_clotho", "audiocaps": "caption_audiocaps", "plain": "caption_plain"}
# Generation caps by the kind of answer; a 30-s window holds about 90 spoken words, and a
# timestamped word costs two extra time tokens.
MAX_NEW_TOKENS = {"timestamps": 512, "transcript": 256, "analysis": 128}
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}
DEFAULT_BATCH_SIZE = 16  # windows per forward pass


# ---- Results ---------------------------------------------------------------------------------


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the clip
    end: float


@dataclass
class Result:
    """The answer for one input. ``error`` is set (and the rest empty) when the input was bad."""

    text: str  # the answer: transcript, translation, caption, answer or label
    task: str  # the task name ("generate" for a raw prompt)
    raw: str = ""  # generated text with tags, windows joined by a space (times are window-relative)
    words: list[Word] | None = None  # word timestamps, when asked for
    label: str | None = None  # classification tasks
    language: str | None = None  # language of ``text``
    error: str | None = None  # what was wrong with this input
    timing: dict = field(default_factory=dict)  # audio_seconds, windows, seconds (compute share), load_seconds
    segments: list[Segment] = field(default_factory=list)  # one per non-silent window, absolute times
    scores: dict[str, float] | None = None  # label -> probability within the label set (constrained decoding)
    problems: list[str] = field(default_factory=list)  # malformed output (e.g. a word without a time)
    flags: list[str] = field(default_factory=list)  # degenerate output or no speech (qaudio.degeneration.FLAGS)
    no_speech_prob: float | None = None  # 1 - speech probability (qaudio.vad); None when not computed

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        """Plain JSON types only (``json.dumps(result.to_dict())`` works)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        d = dict(d)
        d["words"] = None if d.get("words") is None else [Word(**w) for w in d["words"]]
        d["segments"] = [Segment(**s) for s in d.get("segments", [])]
        return cls(**d)


# ---- Requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """What to ask of a clip: a task and its prompt, optionally a label set to choose from."""

    task: Task | None  # None: a raw prompt, parsed by tags only
    prompt: str  # the text after the audio slot
    language: str | None  # language of the answer (joins windows; reported in Result.language)
    labels: tuple[str, ...] | None = None  # choose the most likely of these instead of generating
    generate_kwargs: tuple[tuple[str, Any], ...] = ()  # sorted items, hashable: batches group by them

    @property
    def name(self) -> str:
        return self.task.name if self.task is not None else "generate"


def make_query(
    task: str | Task,
    *,
    lang: str | None = None,
    to: str | None = None,
    timestamps: bool = False,
    question: str | None = None,
    instruction: str | None = None,
    labels: Sequence[str] | None = None,
    style: str = "tags",
    generate_kwargs: dict | None = None,
) -> Query:
    """A request as the model sees it: the task spec's prompt for a request example.

    ``lang`` is the language spoken (default English: the model is told the language, it
    does not detect it), ``to`` the language of the answer (default: ``lang``, or English for
    non-speech tasks). ``timestamps`` turns ``asr`` into ``srwt``. Errors name the bad value.
    """
    task = get_task(task) if isinstance(task, str) else task
    if timestamps and not task.timestamps:
        if task.name != "asr":
            raise ValueError(f"word timestamps are available for transcription (asr) only, not {task.name!r}")
        task = get_task("srwt")
    audio_lang = lang or "en"
    if to is None:
        to = audio_lang if (task.speech and audio_lang != UNKNOWN_LANGUAGE) else "en"
    for kind, value, choices in (("spoken language", audio_lang, (*LANGUAGES, UNKNOWN_LANGUAGE)),
                                 ("output language", to, tuple(LANGUAGES))):
        if value not in choices:
            raise ValueError(f"unknown {kind} {value!r}; valid choices: {', '.join(choices)}")
    request = Example(id="request", audio="-", duration=1.0, task=task.name, audio_lang=audio_lang, text_lang=to,
                      question=question, meta={"instruction": instruction} if instruction else {})
    prompt = task.prompt(request, style)
    if labels is not None:
        labels = tuple(labels)
        if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
            raise ValueError(f"labels must be a non-empty list of non-empty strings, got {list(labels)!r}")
    language = None if isinstance(task, ClassificationTask) or labels else to
    return Query(task, prompt, language, labels, tuple(sorted((generate_kwargs or {}).items())))


def raw_query(prompt: str, generate_kwargs: dict | None = None) -> Query:
    """A raw prompt, used as given (tags and all); word times are parsed if it asks for them."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("a raw prompt must be a non-empty string, e.g. "
                         "'<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>'")
    return Query(None, prompt, None, None, tuple(sorted((generate_kwargs or {}).items())))


def default_max_new_tokens(query: Query) -> int:
    if TIMESTAMPS in query.prompt:
        return MAX_NEW_TOKENS["timestamps"]
    if query.task is None or query.task.tag_path.start == "transcript":
        return MAX_NEW_TOKENS["transcript"]
    return MAX_NEW_TOKENS["analysis"]


def transcribes_speech(query: Query) -> bool:
    """Whether the answer is the clip's speech (ASR, translation): then a clip without speech
    has no answer. Tasks about sounds (captions, questions, labels) answer non-speech audio."""
    if query.labels:
        return False
    if query.task is not None:
        return query.task.tag_path.start == "transcript"
    return TRANSCRIPTION_TAGS["transcript"] in query.prompt


def _load_input(item, index: int | None) -> Audio:
    """One user input -> Audio; errors name the batch position for inputs without a path."""
    where = "" if index is None or isinstance(item, (str, os.PathLike)) else f"input {index}: "
    try:
        if isinstance(item, tuple) and _is_array_pair(item):
            return load_audio(item[0], sample_rate=int(item[1]), allow_silence=True)
        if isinstance(item, (str, os.PathLike, bytes, bytearray, Audio)):
            return load_audio(item, allow_silence=True)  # silence is answered (no_speech), not refused
        if isinstance(item, np.ndarray):
            raise AudioError("<array>: an audio array needs its sample rate; pass (array, sample_rate)")
        raise AudioError(f"unsupported audio input of type {type(item).__name__}; expected a path, bytes, "
                         "(array, sample_rate) or qaudio.audio.Audio")
    except AudioError as e:
        raise AudioError(f"{where}{e}") from None


# ---- The model wrapper -----------------------------------------------------------------------


@dataclass
class _Window:
    """One encoder-sized piece of one input, with its place in the output."""

    item: int  # index of the input
    window: Window
    samples: np.ndarray  # (T,) 16 kHz
    query: Query
    output: Any = None  # generated text, or (K,) label log-likelihoods
    seconds: float = 0.0  # this window's share of its batch's compute time


class AudioModel:
    """A loaded model with task methods; ``model`` is the :class:`qaudio.model.AudioLM`."""

    def __init__(self, model, batch_size: int = DEFAULT_BATCH_SIZE, max_new_tokens: int | None = None,
                 name: str = "model", on_degenerate: str = "keep", detect_no_speech: bool = True):
        if on_degenerate not in degeneration.ON_DEGENERATE:
            raise ValueError(f"unknown on_degenerate {on_degenerate!r}; valid choices: {', '.join(degeneration.ON_DEGENERATE)}")
        self.model = model.eval()
        self.processor = model.processor  # audio and text -> tensors, token ids -> text
        self.batch_size = batch_size  # windows per forward pass
        self.max_new_tokens = max_new_tokens  # None: by task (MAX_NEW_TOKENS)
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

    # -- task methods: one input -> Result (a bad input raises AudioError); a list -> list[Result]

    def transcribe(self, audio, lang: str | None = None, timestamps: bool = False, **generate_kwargs):
        """Speech -> text in the spoken language; ``timestamps`` adds word start/end times."""
        return self._ask(audio, make_query("asr", lang=lang, timestamps=timestamps, style=self.style,
                                           generate_kwargs=generate_kwargs))

    def translate(self, audio, to: str = "en", lang: str | None = None, **generate_kwargs):
        """Speech in ``lang`` -> text in ``to``."""
        return self._ask(audio, make_query("s2tt", lang=lang, to=to, style=self.style, generate_kwargs=generate_kwargs))

    def caption(self, audio, style: str = "clotho", **generate_kwargs):
        """A one-sentence description of the sound; ``style``: clotho, audiocaps or plain."""
        if style not in CAPTION_STYLES:
            raise ValueError(f"unknown caption style {style!r}; valid choices: {', '.join(CAPTION_STYLES)}")
        return self._ask(audio, make_query("aac", instruction=CAPTION_STYLES[style], style=self.style,
                                           generate_kwargs=generate_kwargs))

    def ask(self, audio, question: str, lang: str | None = None, **generate_kwargs):
        """Audio question answering: a free-form answer to ``question`` about the audio."""
        return self._ask(audio, make_query("aqa", lang=lang, question=question, style=self.style,
                                           generate_kwargs=generate_kwargs))

    def classify(self, audio, task: str = "emotion", labels: Sequence[str] | None = None, **generate_kwargs):
        """One label: ``task`` is emotion, scene, vocal or note (or a task name such as ``ser``).

        The label is the most likely of ``labels`` (default: the task's label set), scored
        exactly; a task without a label set (note) generates its answer.
        """
        spec = get_task(CLASSIFY_TASKS.get(task, task))
        if labels is None and isinstance(spec, ClassificationTask):
            labels = spec.labels or None
        return self._ask(audio, make_query(spec, labels=labels, style=self.style, generate_kwargs=generate_kwargs))

    def generate(self, audio, prompt: str, **generate_kwargs):
        """The answer to a raw prompt (tags and all), e.g. from ``qaudio prompt``."""
        return self._ask(audio, raw_query(prompt, generate_kwargs))

    def _ask(self, audio, query: Query):
        if isinstance(audio, list) or (isinstance(audio, tuple) and not _is_array_pair(audio)):
            return self.run(list(audio), query)
        return self.run([audio], query, raise_errors=True)[0]

    # -- evaluation

    def run_examples(self, examples: list[Example], task: Task | str, batch_size: int = DEFAULT_BATCH_SIZE,
                     labels: list[str] | None = None, progress: bool = True, **generate_kwargs) -> list[Result]:
        """Answer manifest examples (prompts from ``task.prompt(example)``), in input order.

        Examples are run longest first, ``batch_size`` at a time, so padding is small; long
        audio is split into windows; ``labels`` constrains each answer to that label set.
        A bad audio file gives a Result with ``error`` set; the others are still answered.
        """
        from tqdm.auto import tqdm

        task = get_task(task) if isinstance(task, str) else task
        kwargs = tuple(sorted(generate_kwargs.items()))
        label_set = tuple(labels) if labels else None
        queries = [
            Query(task, task.prompt(ex, self.style), None if label_set or isinstance(task, ClassificationTask) else ex.text_lang,
                  label_set, kwargs)
            for ex in examples
        ]
        order = sorted(range(len(examples)), key=lambda i: -examples[i].duration)
        results: list[Result | None] = [None] * len(examples)
        with tqdm(total=len(examples), disable=not progress, desc=f"{task.name}", unit="ex") as bar:
            for k in range(0, len(order), batch_size):
                group = order[k : k + batch_size]
                outs = self.run([examples[i].audio for i in group], [queries[i] for i in group], batch_size=batch_size)
                for i, r in zip(group, outs):
                    results[i] = r
                bar.update(len(group))
        return results

    # -- the engine

    def run(self, audios: Sequence, queries: Query | Sequence[Query], batch_size: int | None = None,
            raise_errors: bool = False) -> list[Result]:
        """Answer ``queries[i]`` about ``audios[i]`` (one query may serve all), batched.

        A bad input gives a Result with ``error`` set and does not stop the others (with
        ``raise_errors``, its AudioError is raised instead).
        """
        results = self._run(audios, queries, batch_size, raise_errors)
        if self.on_degenerate == "retry":
            self._retry(audios, queries, results, batch_size)
        return results

    def _run(self, audios: Sequence, queries: Query | Sequence[Query], batch_size: int | None,
             raise_errors: bool) -> list[Result]:
        audios = list(audios)
        queries = [queries] * len(audios) if isinstance(queries, Query) else list(queries)
        if len(queries) != len(audios):
            raise ValueError(f"got {len(audios)} audio inputs but {len(queries)} queries")
        results: list[Result | None] = [None] * len(audios)
        clips: list[Audio | None] = [None] * len(audios)
        load_seconds = [0.0] * len(audios)
        pieces: list[tuple[int, Window, np.ndarray]] = []
        for i, (audio, query) in enumerate(zip(audios, queries)):
            t0 = time.perf_counter()
            try:
                clips[i] = _load_input(audio, None if raise_errors else i)
            except AudioError as e:
                if raise_errors:
                    raise
                results[i] = Result(text="", task=query.name, language=query.language, error=str(e))
                continue
            load_seconds[i] = time.perf_counter() - t0
            pieces += [(i, w, clips[i].samples[w.start : w.end]) for w in split_windows(clips[i].samples, self.max_audio_seconds)]

        # A window without speech (silence; for transcription, no speech) has nothing to say.
        no_speech = self._no_speech_probs(pieces, queries)
        work = [_Window(i, w, piece, queries[i]) for (i, w, piece), p in zip(pieces, no_speech) if not vad.is_no_speech(p)]
        window_probs: dict[int, list[float | None]] = {}
        for (i, _, _), p in zip(pieces, no_speech):
            window_probs.setdefault(i, []).append(p)

        self._execute(work, batch_size or self.batch_size)

        by_item: dict[int, list[_Window]] = {}
        for w in work:
            by_item.setdefault(w.item, []).append(w)
        for i, clip in enumerate(clips):
            if clip is None:
                continue
            parts = by_item.get(i, [])
            probs = window_probs[i]
            if parts:
                results[i] = _stitch(queries[i], parts)
                results[i].flags = self._flags(queries[i], parts, results[i])
            else:
                results[i] = Result(text="", task=queries[i].name, language=queries[i].language, flags=["no_speech"])
            # The clip's speech is its most speech-like window's.
            results[i].no_speech_prob = None if None in probs else min(probs)
            results[i].timing = {
                "audio_seconds": round(clip.duration, 3),
                "windows": len(parts),
                "seconds": round(sum(p.seconds for p in parts), 4),
                "load_seconds": round(load_seconds[i], 4),
            }
        return results

    def _no_speech_probs(self, pieces: list[tuple[int, Window, np.ndarray]], queries: list[Query]) -> list[float | None]:
        """no_speech_prob of each window: silence for every task, Silero VAD for transcription."""
        out: list[float | None] = [None] * len(pieces)
        for use_vad in (False, True):
            idx = [k for k, (i, _, _) in enumerate(pieces)
                   if use_vad == (self.detect_no_speech and transcribes_speech(queries[i]))]
            for k, p in zip(idx, vad.no_speech_probs([pieces[k][2] for k in idx], use_vad=use_vad)):
                out[k] = p
        return out

    def _flags(self, query: Query, parts: list[_Window], result: Result) -> list[str]:
        """Degeneration flags of a generated answer (a label chosen from a set cannot degenerate)."""
        if query.labels:
            return []
        cap = dict(self._generate_kwargs(query))["max_new_tokens"]
        tokens = None  # a stand-in model without a tokenizer cannot tell a cut-off answer
        if self.tokenizer is not None:
            tokens = max(len(self.tokenizer(p.output, add_special_tokens=False)["input_ids"]) for p in parts)
        return degeneration.detect(result.text, result.raw, query.prompt, generated_tokens=tokens, max_new_tokens=cap)

    def _retry(self, audios: list, queries: Query | Sequence[Query], results: list[Result],
               batch_size: int | None) -> None:
        """Decode degenerate answers again with a repetition penalty; mark them ``retried``."""
        queries = [queries] * len(results) if isinstance(queries, Query) else list(queries)
        redo = [i for i, r in enumerate(results) if r.ok and degeneration.retryable(r.flags)]
        if not redo:
            return
        retry_queries = [replace(queries[i], generate_kwargs=tuple(sorted(
            {**dict(queries[i].generate_kwargs), **degeneration.RETRY_GENERATE_KWARGS}.items()))) for i in redo]
        with warnings.catch_warnings():  # "the penalty applies to new tokens only": what is wanted here
            warnings.filterwarnings("ignore", message=r"Passing `(repetition_penalty|no_repeat_ngram_size)`")
            again_results = self._run([audios[i] for i in redo], retry_queries, batch_size, False)
        for i, again in zip(redo, again_results):
            again.flags = [f for f in degeneration.FLAGS if f in {*again.flags, "retried"}]
            again.timing["seconds"] = round(again.timing.get("seconds", 0.0) + results[i].timing.get("seconds", 0.0), 4)
            results[i] = again

    def _execute(self, work: list[_Window], batch_size: int) -> None:
        """Fill ``output`` of every window: batches of like requests, longest first."""
        import torch

        # Group like requests: a batch shares its generation settings (the cap included, so
        # a request's answer never depends on what it was batched with).
        groups: dict[tuple, list[_Window]] = {}
        for w in work:
            key = ("score", ()) if w.query.labels else ("generate", self._generate_kwargs(w.query))
            groups.setdefault(key, []).append(w)
        with torch.inference_mode():
            for (kind, kwargs), ws in groups.items():
                ws.sort(key=lambda w: -len(w.samples))
                for k in range(0, len(ws), batch_size):
                    batch = ws[k : k + batch_size]
                    t0 = time.perf_counter()
                    if kind == "score":
                        outputs = self._score(batch, batch_size)
                    else:
                        outputs = self._generate(batch, dict(kwargs))
                    share = (time.perf_counter() - t0) / len(batch)
                    for w, out in zip(batch, outputs):
                        w.output, w.seconds = out, share

    def _to_device(self, batch: dict) -> dict:
        device = self.device
        return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}

    def _generate_kwargs(self, query: Query) -> tuple:
        kwargs = dict(query.generate_kwargs)
        kwargs.setdefault("max_new_tokens", self.max_new_tokens or default_max_new_tokens(query))
        return tuple(sorted(kwargs.items()))

    def _generate(self, batch: list[_Window], kwargs: dict) -> list[str]:
        inputs = self._to_device(self.processor.prepare([w.samples for w in batch], [w.query.prompt for w in batch]))
        return self.processor.batch_decode(self.model.generate(inputs, **kwargs))

    def _score(self, batch: list[_Window], pairs_per_pass: int) -> list[np.ndarray]:
        """log p(label + eos | audio, prompt) for every label of every window: (K,) each.

        The audio tower runs once per window; the LLM runs once per (window, label) pair,
        reusing the encoder states.
        """
        inputs = self._to_device(self.processor.prepare([w.samples for w in batch], [w.query.prompt for w in batch]))
        states, lengths = self.model.encode(inputs["input_features"], inputs["feature_lengths"])  # (B, T', D), (B,)
        pairs = [(j, label) for j, w in enumerate(batch) for label in w.query.labels]
        logp = np.empty(len(pairs), dtype=np.float64)
        for k in range(0, len(pairs), pairs_per_pass):
            chunk = pairs[k : k + pairs_per_pass]
            feats = self._to_device(self.processor.prepare_from_features(
                [states[j, : lengths[j]] for j, _ in chunk], [batch[j].query.prompt for j, _ in chunk],
                [label for _, label in chunk]))
            out = self.model(**feats)  # loss_sum: (P,) summed NLL over each target's tokens
            logp[k : k + len(chunk)] = (-out.loss_sum.float()).cpu().numpy()  # sum log p: exact likelihood
        outputs, k = [], 0
        for w in batch:
            outputs.append(logp[k : k + len(w.query.labels)])
            k += len(w.query.labels)
        return outputs


def _is_array_pair(x) -> bool:
    return len(x) == 2 and isinstance(x[1], (int, float)) and not isinstance(x[1], bool) and not isinstance(x[0], (str, bytes))


def _parse(query: Query, raw: str) -> Prediction:
    if query.task is not None:
        return query.task.parse(raw)
    if TIMESTAMPS in query.prompt:
        timed = parse_timestamped(raw)
        return Prediction(text=timed.text, words=timed.words, problems=timed.problems)
    return Prediction(text=strip_tags(raw))


def _stitch(query: Query, parts: list[_Window]) -> Result:
    """One Result from the windows of one clip (in time order)."""
    parts = sorted(parts, key=lambda p: p.window.start)
    many = len(parts) > 1
    if query.labels:
        # Windows are independent evidence: add their log-likelihoods, pick the best label.
        total = np.sum([p.output for p in parts], axis=0) if parts else np.zeros(len(query.labels))
        best = int(np.argmax(total))
        probs = np.exp(total - total.max())
        probs /= probs.sum()
        label = query.labels[best]
        return Result(text=label, task=query.name, raw=label, label=label, language=query.language,
                      scores={lab: round(float(p), 6) for lab, p in zip(query.labels, probs)},
                      segments=[Segment(round(p.window.offset, 3), round(p.window.offset + p.window.duration, 3), label)
                                for p in parts])
    preds = [_parse(query, p.output) for p in parts]
    problems = [f"window {k} ({parts[k].window.offset:.2f} s): {msg}" if many else msg
                for k, pred in enumerate(preds) for msg in pred.problems]
    segments = [Segment(round(p.window.offset, 3), round(p.window.offset + p.window.duration, 3), pred.text)
                for p, pred in zip(parts, preds)]
    words = None
    if any(pred.words is not None for pred in preds):
        words = [Word(w, float(s), float(e)) for p, pred in zip(parts, preds)
                 for w, s, e in shift_words(pred.words or [], p.window.offset)]
    label = None
    if isinstance(query.task, ClassificationTask):
        votes = Counter(pred.label for pred in preds if pred.label)
        label = votes.most_common(1)[0][0] if votes else ""
        text = label
    else:
        text = join_texts([pred.text for pred in preds], query.language)
    return Result(text=text, task=query.name, raw=" ".join(p.output for p in parts), words=words, label=label,
                  language=query.language, segments=segments, problems=problems)


def load(model: str, device: str | None = None, dtype: str | None = None) -> AudioModel:
    """Load a saved model (a directory from ``save_pretrained``, or a hub id) for inference.

    ``device``: default cuda when available, else cpu. ``dtype``: float32 (default: batched
    results then equal one-by-one results), bfloat16 or float16.
    """
    import torch

    from .model import AudioLM

    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid choices: {', '.join(DTYPES)}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    lm = AudioLM.from_pretrained(str(model), device=device, dtype=getattr(torch, DTYPES[dtype or "float32"]))
    return AudioModel(lm, name=str(model))


# ---- qaudio run ------------------------------------------------------------------------------

CLI_TASKS = ("asr", "s2tt", "aac", "aqa", "ser", "asc", "vsc", "mna", "srwt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a saved model directory (or hub id)")
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, mp3, ...)")
    parser.add_argument("--task", default="asr", help=f"{', '.join(CLI_TASKS)}, or a task .py file (default: asr)")
    parser.add_argument("--lang", default=None, help="spoken language (default: en; the model does not detect it)")
    parser.add_argument("--to", default=None, help="output language, for translation (s2tt)")
    parser.add_argument("--timestamps", action="store_true", help="word timestamps (asr)")
    parser.add_argument("--question", default=None, help="the question (aqa)")
    parser.add_argument("--caption-style", default="clotho", choices=tuple(CAPTION_STYLES), help="caption style (aac)")
    parser.add_argument("--labels", default=None, help="comma-separated label set to choose from (classification)")
    parser.add_argument("--prompt", default=None, help="a raw tagged prompt instead of --task")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="generation cap (default: by task)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--dtype", default=None, choices=tuple(DTYPES), help="weights dtype (default: float32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--vad", action="store_true", help="cut each file at the pauses a voice-activity detector "
                        "hears and answer each utterance with its times (needs silero-vad)")
    parser.add_argument("--stream", action="store_true", help="transcribe as a live stream: partial transcripts "
                        "while an utterance lasts, a final one with word times at its end")
    parser.add_argument("--realtime", action="store_true", help="with --stream: feed the file at recording pace")
    add_guard_arguments(parser)


def add_guard_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``qaudio run`` and ``qaudio eval``: what to do with degenerate answers."""
    parser.add_argument("--on-degenerate", default="keep", choices=degeneration.ON_DEGENERATE,
                        help="keep: flag degenerate answers (loops, echoes, cut-offs); retry: decode them again with "
                             "a repetition penalty and no repeated 4-grams, flagged 'retried' (default: keep)")
    parser.add_argument("--no-speech-check", dest="no_speech_check", action="store_false",
                        help="transcribe clips even when the voice-activity detector finds no speech in them "
                             "(silent clips are still answered empty)")


def query_from_args(args: argparse.Namespace, style: str) -> Query:
    """The one mapping from command-line (and server form) fields to a Query."""
    if args.prompt:
        return raw_query(args.prompt)
    task = get_task(CLASSIFY_TASKS.get(args.task, args.task))
    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    if labels is None and isinstance(task, ClassificationTask):
        labels = task.labels or None
    return make_query(task, lang=args.lang, to=args.to, timestamps=args.timestamps, question=args.question,
                      instruction=CAPTION_STYLES[args.caption_style] if task.tag_path.task == "caption" else None,
                      labels=labels, style=style)


def _print_result(path: str, result: Result, as_json: bool, many: bool) -> None:
    if as_json:
        print(json.dumps({"file": path, **result.to_dict()}, ensure_ascii=False), flush=True)
        return
    if not result.ok:
        print(f"qaudio run: {result.error}", file=sys.stderr)
        return
    print(f"{path}: {result.text}" if many else result.text, flush=True)
    if result.flags:
        meaning = "; ".join(f"{f}: {degeneration.FLAGS[f]}" for f in result.flags)
        print(f"qaudio run: {path}: flagged {meaning}", file=sys.stderr)
    for w in result.words or []:
        print(f"  {w.start:8.2f} {w.end:8.2f}  {w.word}")


def main(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.task not in CLI_TASKS and args.task not in CLASSIFY_TASKS and args.task not in registry("tasks") \
            and not args.task.endswith(".py"):
        raise ValueError(f"unknown task {args.task!r}; valid choices: {', '.join(CLI_TASKS)}, or a task .py file")
    model = load(args.model, device=args.device, dtype=args.dtype)
    model.max_new_tokens = args.max_new_tokens
    model.on_degenerate, model.detect_no_speech = args.on_degenerate, args.no_speech_check
    query = query_from_args(args, model.style)
    if args.vad or args.stream:
        from .realtime import run_cli

        return run_cli(model, args, query)
    many = len(args.files) > 1
    failed = 0
    with tqdm(total=len(args.files), disable=args.no_progress or not many, unit="file") as bar:
        for k in range(0, len(args.files), args.batch_size):
            paths = args.files[k : k + args.batch_size]
            for path, result in zip(paths, model.run(paths, query, batch_size=args.batch_size)):
                failed += not result.ok
                _print_result(path, result, args.json, many)
            bar.update(len(paths))
    return 1 if failed else 0
