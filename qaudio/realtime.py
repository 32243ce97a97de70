"""Live transcription: utterances found by voice-activity detection, partial and final transcripts.

One engine, three ways in:

- ``WS /v1/realtime`` on ``qaudio serve`` (:func:`add_realtime_route`): a WebSocket that takes
  16 kHz PCM16 as it is recorded and answers with events named after OpenAI's realtime
  transcription events (https://platform.openai.com/docs/guides/realtime-transcription);
- ``qaudio run --stream FILE``: the same engine over a file, partials shown in the terminal;
- ``qaudio run --vad FILE``: the file cut into utterances offline, each one transcribed.

The engine (:class:`Utterances`) feeds audio to :class:`qaudio.vad.StreamingVAD`. While an
utterance lasts, every ``partial_every_s`` of new audio it asks for a partial transcript of
the utterance so far; when the detector hears ``min_silence_ms`` of pause (or the utterance
reaches the encoder's window, or the client commits), it asks for the final transcript of
exactly ``[start, end)`` with word times. The model sees each piece as an ordinary clip, so a
final transcript equals ``model.transcribe(that piece, timestamps=True)``.

Protocol (client -> server), JSON text frames unless noted:

=======================================  =========================================================
``transcription_session.update``         ``{"session": {"input_audio_format": "pcm16",
                                         "input_audio_transcription": {"language": "en"},
                                         "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                         "silence_duration_ms": 300, "prefix_padding_ms": 32}}}``
``input_audio_buffer.append``            ``{"audio": "<base64 PCM16 little-endian, 16 kHz mono>"}``
binary frame                             the same PCM16 bytes, without base64
``input_audio_buffer.commit``            end the current utterance now (it is transcribed; speech
                                         that goes on becomes the next utterance)
``input_audio_buffer.clear``             drop the current utterance untranscribed
=======================================  =========================================================

Server -> client: ``transcription_session.created`` / ``.updated`` {session};
``input_audio_buffer.speech_started`` {item_id, audio_start_ms};
``input_audio_buffer.speech_stopped`` {item_id, audio_end_ms};
``input_audio_buffer.committed`` {item_id, previous_item_id};
``conversation.item.input_audio_transcription.partial`` {item_id, transcript, audio_end_ms};
``conversation.item.input_audio_transcription.completed`` {item_id, content_index, transcript,
words [{word, start, end}] (seconds from the session start), audio_start_ms, audio_end_ms};
``conversation.item.input_audio_transcription.failed`` {item_id, error}; ``error`` {error
{type, code, message, param}}. Differences from OpenAI: audio is 16 kHz (OpenAI: 24 kHz);
partials are ``.partial`` events carrying the whole hypothesis so far, because each partial
re-decodes the utterance and may revise earlier words (OpenAI's ``.delta`` events only append);
``completed`` adds ``words`` and the utterance's times. A partial is skipped while the
session's previous one is still running, so a slow model sends fewer partials, never a backlog;
no partial of an utterance follows its ``speech_stopped``.

Limits: audio per session (``max_session_s``), bytes per message (``max_message_kb``),
concurrent sessions (``max_sessions``), and the server's bearer key (``Authorization: Bearer
KEY`` on the upgrade request). Model work goes through the server's bounded batching queue.
A client that disconnects mid-utterance ends its session; its queued work is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hmac
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from . import flags
from .audio import SAMPLE_RATE, Audio, load_audio
from .vad import INSTALL_HINT, StreamingVAD, VADConfig
from .vad import available as vad_available

if TYPE_CHECKING:
    from .infer import Pipeline
    from .result import Result
    from .run import RunConfig
    from .serve import DynamicBatcher
    from .task import Request

EVENT = "conversation.item.input_audio_transcription"  # prefix of the transcript events
LOOKBACK_S = 1.0  # audio kept before the current position while nobody speaks (covers the VAD's start padding)


@dataclass
class RealtimeConfig:
    partial_every_s: float = 0.5  # new speech between partial transcripts of an utterance
    max_session_s: float = 3600.0  # audio one session may send
    max_message_kb: float = 256.0  # largest message (1 s of base64 PCM16 at 16 kHz is about 43 kB)
    max_sessions: int = 8  # concurrent streaming sessions; more are refused (close code 1013)
    vad: VADConfig = field(default_factory=VADConfig, metadata={"flag": False})  # endpointing (no flags)

    def __post_init__(self) -> None:
        for name in ("partial_every_s", "max_session_s", "max_message_kb"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")


# ---- the engine ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """What the engine asks for: ``kind`` is started, partial or final; samples ``[start, end)``."""

    kind: str
    item: int  # utterance number, from 1
    start: int  # first sample (from the stream's start)
    end: int  # one past the last sample (for started: where speech was detected)


class Utterances:
    """Voice-activity endpointing over a stream of 16 kHz samples (see the module docstring)."""

    def __init__(self, max_utterance_s: float, partial_every_s: float = 0.5, vad: VADConfig | None = None):
        self.vad = StreamingVAD(vad if vad is not None else VADConfig())
        self.max_len = int(max_utterance_s * SAMPLE_RATE)
        self.partial_every = int(partial_every_s * SAMPLE_RATE)
        self.buffer = np.zeros(0, dtype=np.float32)
        self.base = 0  # stream position of buffer[0]
        self.received = 0  # samples fed so far
        self.item = 0
        self.start: int | None = None  # the current utterance's first sample, while one is open
        self.last_partial = 0
        self.last_end = 0  # the previous utterance's end: a new one never starts before it

    def segment(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` of the stream (valid until the next ``feed``)."""
        if start < self.base:
            raise ValueError(f"samples from {start} are gone (kept from {self.base})")
        return self.buffer[start - self.base : end - self.base]

    def feed(self, samples: np.ndarray) -> list[Event]:
        self._trim()  # here, not after: the events of the last feed may still read their segments
        samples = np.asarray(samples, dtype=np.float32)
        self.buffer = np.concatenate([self.buffer, samples])
        self.received += len(samples)
        events = []
        for kind, at in self.vad.feed(samples):
            if kind == "start":
                events.append(self._open(at))
            elif self.start is not None:
                events.append(self._close(min(at, self.vad.position)))
        if self.start is not None:
            position = self.vad.position
            if position - self.start >= self.max_len:  # the encoder's window is full: cut here, go on
                events += self._cut(self.start + self.max_len)
            elif position - self.last_partial >= self.partial_every:
                self.last_partial = position
                events.append(Event("partial", self.item, self.start, position))
        return events

    def flush(self) -> list[Event]:
        """End the open utterance at the last sample received (commit, or the end of a file)."""
        return [] if self.start is None else self._cut(self.received)

    def _cut(self, at: int) -> list[Event]:
        """End the open utterance at ``at``; if the detector still hears speech, the next one
        starts right there (no audio falls between the two)."""
        events = [self._close(at)]
        if self.vad.in_speech:
            events.append(self._open(at))
        return events

    def clear(self) -> None:
        """Drop the open utterance without a final transcript."""
        if self.start is not None:
            self.last_end, self.start = self.received, None
            self.vad.reset()

    def _open(self, at: int) -> Event:
        self.item += 1
        self.start = max(at, self.last_end, self.base)
        self.last_partial = self.vad.position
        return Event("started", self.item, self.start, self.vad.position)

    def _close(self, end: int) -> Event:
        assert self.start is not None, "an utterance is closed after it was opened"
        end = max(end, self.start + 1)
        event = Event("final", self.item, self.start, end)
        self.start, self.last_end = None, end
        return event

    def _trim(self) -> None:
        """Keep the open utterance, or the last second while nobody speaks: memory stays bounded."""
        keep_from = self.start if self.start is not None else self.received - int(LOOKBACK_S * SAMPLE_RATE)
        cut = max(0, keep_from - self.base)
        if cut:
            self.buffer, self.base = self.buffer[cut:], self.base + cut


def transcripts_for(model: Pipeline, lang: str | None) -> tuple[Request, Request]:
    """The partial (plain) and final (word times) queries for one language."""
    from .specs import get_task

    asr = get_task("asr")
    return asr.request(lang), asr.request(lang, timestamps=True)


def words_json(result: Result, offset_s: float) -> list[dict]:
    """Word times shifted from the utterance to the stream (seconds, 10 ms time-token grid)."""
    return [
        {"word": w.word, "start": round(w.start + offset_s, 3), "end": round(w.end + offset_s, 3)}
        for w in result.words or []
    ]


def _ms(samples: int) -> int:
    return round(samples * 1000 / SAMPLE_RATE)


# ---- the WebSocket route ---------------------------------------------------------------------


class _Close(Exception):
    def __init__(self, code: int, message: str, kind: str):
        super().__init__(message)
        self.code, self.message, self.kind = code, message, kind


class _Session:
    """One WebSocket client: receive loop, the engine, and the model requests it sends."""

    ids = itertools.count(1)

    def __init__(self, ws: Any, model: Pipeline, batcher: DynamicBatcher, config: RealtimeConfig):
        self.ws, self.model, self.batcher, self.config = ws, model, batcher, config
        self.id = f"sess_{next(self.ids)}"
        self.language = "en"
        self.vad = config.vad
        self.engine: Utterances | None = None
        self.queries = transcripts_for(model, self.language)
        self.partial: asyncio.Task | None = None
        self.finals: list[asyncio.Task] = []
        self.ended: set[int] = set()  # utterances whose end was sent
        self.send_lock = asyncio.Lock()

    def describe(self) -> dict:
        return {
            "id": self.id,
            "object": "realtime.transcription_session",
            "input_audio_format": "pcm16",
            "sample_rate": SAMPLE_RATE,
            "input_audio_transcription": {"model": self.model.name.rsplit("/", 1)[-1], "language": self.language},
            "turn_detection": {
                "type": "server_vad",
                "threshold": self.vad.threshold,
                "silence_duration_ms": self.vad.min_silence_ms,
                "prefix_padding_ms": self.vad.pad_ms,
            },
            "qaudio": {
                "partial_every_s": self.config.partial_every_s,
                "max_session_s": self.config.max_session_s,
                "max_message_kb": self.config.max_message_kb,
            },
        }

    async def send(self, event: dict) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(event, ensure_ascii=False))

    async def send_answer(self, event: dict) -> None:
        """A model answer may come after the client left: then there is no one to tell."""
        try:
            await self.send(event)
        except Exception:  # WebSocketDisconnect, or starlette's RuntimeError after a close
            pass

    async def error(self, message: str, code: str, param: str | None = None) -> None:
        await self.send(
            {
                "type": "error",
                "error": {"type": "invalid_request_error", "code": code, "message": message, "param": param},
            }
        )

    async def run(self) -> None:
        from starlette.websockets import WebSocketDisconnect

        limit = int(self.config.max_message_kb * 1024)
        await self.send({"type": "transcription_session.created", "session": self.describe()})
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes") if message.get("bytes") is not None else message.get("text", "")
                if len(data) > limit:
                    raise _Close(
                        1009,
                        f"message is {len(data)} bytes; this server accepts at most {limit} "
                        "(--max-message-kb): send shorter chunks",
                        "message_too_large",
                    )
                if isinstance(data, bytes):
                    await self.audio(data)
                else:
                    await self.handle(data)
        except WebSocketDisconnect:
            return
        except _Close as e:
            await self.error(e.message, e.kind)
            await self.ws.close(code=e.code, reason=e.kind)
        finally:
            for task in [self.partial, *self.finals]:
                if task is not None and not task.done():
                    task.cancel()  # a cancelled request is skipped by the batcher

    async def handle(self, text: str) -> None:
        try:
            event = json.loads(text)
            kind = event["type"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return await self.error("expected a JSON object with a 'type' field", "invalid_event")
        if kind in ("transcription_session.update", "session.update"):
            return await self.update(event.get("session") or {})
        if kind == "input_audio_buffer.append":
            try:
                pcm = base64.b64decode(event.get("audio", ""), validate=True)
            except (binascii.Error, TypeError, ValueError):
                return await self.error("'audio' must be base64-encoded PCM16", "invalid_audio", "audio")
            return await self.audio(pcm)
        if kind == "input_audio_buffer.commit":
            return await self.dispatch(await asyncio.to_thread(self.engine.flush) if self.engine else [])
        if kind == "input_audio_buffer.clear":
            if self.engine:
                self.engine.clear()
            return await self.send({"type": "input_audio_buffer.cleared"})
        await self.error(f"unknown event type {kind!r}", "unknown_event", "type")

    async def update(self, session: dict) -> None:
        if self.engine is not None:
            return await self.error("the session can be configured only before the first audio", "session_started")
        fmt = session.get("input_audio_format", "pcm16")
        if fmt != "pcm16":
            return await self.error(
                f"input_audio_format {fmt!r} is not supported; send pcm16 (16 kHz mono)",
                "unsupported_format",
                "input_audio_format",
            )
        language = (session.get("input_audio_transcription") or {}).get("language") or self.language
        turn = session.get("turn_detection") or {}
        try:
            queries = transcripts_for(self.model, language)
            vad = replace(
                self.vad,
                threshold=float(turn.get("threshold", self.vad.threshold)),
                min_silence_ms=int(turn.get("silence_duration_ms", self.vad.min_silence_ms)),
                pad_ms=int(turn.get("prefix_padding_ms", self.vad.pad_ms)),
            )
        except (ValueError, TypeError) as e:
            return await self.error(str(e), "invalid_session")
        self.language, self.queries, self.vad = language, queries, vad
        await self.send({"type": "transcription_session.updated", "session": self.describe()})

    async def audio(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            return await self.error(f"PCM16 audio needs an even number of bytes, got {len(pcm)}", "invalid_audio")
        if self.engine is None:
            self.engine = await asyncio.to_thread(
                Utterances, self.model.max_audio_seconds, self.config.partial_every_s, self.vad
            )
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if (self.engine.received + len(samples)) / SAMPLE_RATE > self.config.max_session_s:
            raise _Close(
                1008,
                f"the session reached {self.config.max_session_s:g} s of audio (--max-session-s); open a new one",
                "session_too_long",
            )
        await self.dispatch(await asyncio.to_thread(self.engine.feed, samples))

    async def dispatch(self, events: list[Event]) -> None:
        for e in events:
            assert self.engine is not None, "events come from the engine"
            if e.kind == "started":
                await self.send(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "item_id": self._item(e.item),
                        "audio_start_ms": _ms(e.start),
                    }
                )
            elif e.kind == "partial":
                if self.partial is None or self.partial.done():
                    clip = Audio(self.engine.segment(e.start, e.end).copy(), "<stream>")
                    self.partial = asyncio.create_task(self._partial(e, clip))
            else:
                await self.send(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "item_id": self._item(e.item),
                        "audio_end_ms": _ms(e.end),
                    }
                )
                await self.send(
                    {
                        "type": "input_audio_buffer.committed",
                        "item_id": self._item(e.item),
                        "previous_item_id": self._item(e.item - 1) if e.item > 1 else None,
                    }
                )
                self.ended.add(e.item)  # its partials still running are not sent: the final is coming
                clip = Audio(self.engine.segment(e.start, e.end).copy(), "<stream>")
                previous = self.finals[-1] if self.finals else None
                self.finals = [t for t in self.finals if not t.done()]
                self.finals.append(asyncio.create_task(self._final(e, clip, previous)))

    def _item(self, n: int) -> str:
        return f"item_{self.id[5:]}_{n}"

    async def _transcribe(self, clip: Audio, query: Request) -> tuple[Result | None, str | None, str | None]:
        from .serve import ApiError

        try:
            result = await self.batcher.submit(clip, query)
        except ApiError as e:
            return None, e.message, e.code or "server_error"
        if not result.ok:
            return None, result.error, "model_error"
        return result, None, None

    async def _partial(self, e: Event, clip: Audio) -> None:
        result, _, _ = await self._transcribe(clip, self.queries[0])
        if result is not None and e.item not in self.ended:  # no partial after speech_stopped
            await self.send_answer(
                {
                    "type": f"{EVENT}.partial",
                    "item_id": self._item(e.item),
                    "content_index": 0,
                    "transcript": result.text,
                    "audio_end_ms": _ms(e.end),
                }
            )

    async def _final(self, e: Event, clip: Audio, previous: asyncio.Task | None) -> None:
        result, message, code = await self._transcribe(clip, self.queries[1])
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)  # finals go out in utterance order
        if result is None:
            return await self.send_answer(
                {
                    "type": f"{EVENT}.failed",
                    "item_id": self._item(e.item),
                    "content_index": 0,
                    "error": {"type": "server_error", "code": code, "message": message},
                }
            )
        await self.send_answer(
            {
                "type": f"{EVENT}.completed",
                "item_id": self._item(e.item),
                "content_index": 0,
                "transcript": result.text,
                "words": words_json(result, e.start / SAMPLE_RATE),
                "audio_start_ms": _ms(e.start),
                "audio_end_ms": _ms(e.end),
            }
        )


def add_realtime_route(
    app: Any, model: Pipeline, batcher: DynamicBatcher, api_key: str | None, config: RealtimeConfig | None = None
) -> None:
    """Add ``WS /v1/realtime`` to a FastAPI app (the server's batcher runs the model)."""
    from starlette.routing import WebSocketRoute

    config = config or RealtimeConfig()
    active = {"sessions": 0}

    async def realtime(ws):  # a plain Starlette endpoint: the socket is its only argument
        if api_key:
            given = ws.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return await ws.close(code=1008, reason="missing or wrong API key")  # before accept: HTTP 403
        await ws.accept()
        if not vad_available():
            await ws.send_text(
                json.dumps(
                    {
                        "type": "error",
                        "error": {
                            "type": "server_error",
                            "code": "vad_unavailable",
                            "param": None,
                            "message": INSTALL_HINT,
                        },
                    }
                )
            )
            return await ws.close(code=1011, reason="vad_unavailable")
        if active["sessions"] >= config.max_sessions:
            await ws.send_text(
                json.dumps(
                    {
                        "type": "error",
                        "error": {
                            "type": "server_busy",
                            "code": "too_many_sessions",
                            "param": None,
                            "message": f"server busy: {config.max_sessions} streaming sessions open (--max-sessions); retry later",
                        },
                    }
                )
            )
            return await ws.close(code=1013, reason="too_many_sessions")
        active["sessions"] += 1
        try:
            await _Session(ws, model, batcher, config).run()
        finally:
            active["sessions"] -= 1

    app.router.routes.append(WebSocketRoute("/v1/realtime", realtime))
    app.state.realtime_sessions = active


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The streaming route's limits, for ``qaudio serve``: one flag per :class:`RealtimeConfig` field."""
    flags.add_arguments(parser, RealtimeConfig)


def config_from_args(args: argparse.Namespace) -> RealtimeConfig:
    return flags.from_args(RealtimeConfig, args)


# ---- qaudio run --stream / --vad -------------------------------------------------------------


def stream_file(
    model: Pipeline,
    path: str,
    lang: str | None = None,
    chunk_s: float = 0.1,
    realtime: bool = False,
    out: TextIO | None = None,
    as_json: bool = False,
) -> list[dict]:
    """Run the streaming engine over a file (paced like a live recording when ``realtime``);
    partials overwrite one terminal line, each final is printed with its times. Returns the finals."""
    out = out or sys.stdout
    partial_q, final_q = transcripts_for(model, lang)
    samples = load_audio(path, allow_silence=True).samples
    engine = Utterances(model.max_audio_seconds, RealtimeConfig().partial_every_s)
    chunk = max(1, int(chunk_s * SAMPLE_RATE))
    finals = []
    tty = hasattr(out, "isatty") and out.isatty() and not as_json
    t0 = time.monotonic()
    for k in itertools.chain(range(0, len(samples), chunk), [None]):
        events = engine.flush() if k is None else engine.feed(samples[k : k + chunk])
        for e in events:
            clip = Audio(engine.segment(e.start, e.end), path)
            if e.kind == "partial":
                text = model.run([clip], partial_q)[0].text
                if tty:
                    out.write(f"\r\033[K  ... {text}")
                    out.flush()
                elif as_json:
                    print(
                        json.dumps(
                            {"type": "partial", "item": e.item, "end": e.end / SAMPLE_RATE, "text": text},
                            ensure_ascii=False,
                        ),
                        file=out,
                        flush=True,
                    )
            elif e.kind == "final":
                result = model.run([clip], final_q)[0]
                final = {
                    "type": "final",
                    "item": e.item,
                    "start": round(e.start / SAMPLE_RATE, 3),
                    "end": round(e.end / SAMPLE_RATE, 3),
                    "text": result.text,
                    "words": words_json(result, e.start / SAMPLE_RATE),
                }
                finals.append(final)
                if as_json:
                    print(json.dumps(final, ensure_ascii=False), file=out, flush=True)
                else:
                    out.write(
                        ("\r\033[K" if tty else "") + f"[{final['start']:8.2f} --> {final['end']:8.2f}] {result.text}\n"
                    )
                    out.flush()
        if realtime and k is not None:
            time.sleep(max(0.0, t0 + (k + chunk) / SAMPLE_RATE - time.monotonic()))
    return finals


def vad_segments(model: Pipeline, path: str, query: Request) -> list[dict]:
    """``qaudio run --vad``: the file's speech stretches (offline VAD), each answered as one clip."""
    from .vad import speech_spans

    samples = load_audio(path, allow_silence=True).samples
    spans = speech_spans(samples)
    results = model.run([Audio(samples[s:e], path) for s, e in spans], query) if spans else []
    return [
        {
            "start": round(s / SAMPLE_RATE, 3),
            "end": round(e / SAMPLE_RATE, 3),
            "text": r.text,
            "words": words_json(r, s / SAMPLE_RATE) if r.words is not None else None,
            "error": r.error,
        }
        for (s, e), r in zip(spans, results, strict=True)
    ]


def run_cli(model: Pipeline, args: RunConfig, query: Request) -> int:
    """``qaudio run --stream`` / ``--vad``: one file at a time, utterance by utterance."""
    if not vad_available():
        raise ValueError(INSTALL_HINT)
    task = query.task
    if args.stream and (
        task is None or not (task.transcribes_speech and (task.timestamps or task.timestamped_variant))
    ):
        raise ValueError("--stream transcribes (task asr); drop --task/--prompt or use --vad for other tasks")
    for path in args.files:
        if args.stream:
            stream_file(model, path, args.lang, realtime=args.realtime, as_json=args.json)
            continue
        for seg in vad_segments(model, path, query):
            if args.json:
                print(json.dumps({"file": path, **seg}, ensure_ascii=False), flush=True)
            else:
                print(
                    f"[{seg['start']:8.2f} --> {seg['end']:8.2f}] {seg['text'] if seg['error'] is None else seg['error']}"
                )
    return 0
