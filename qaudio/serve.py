"""HTTP server: OpenAI-compatible audio routes and a generic route, with dynamic batching.

Routes:

- ``POST /v1/audio/transcriptions`` and ``POST /v1/audio/translations``: the OpenAI audio API
  (https://platform.openai.com/docs/api-reference/audio): multipart ``file``, ``model``,
  ``language``, ``prompt``, ``response_format`` (json, text, srt, vtt, verbose_json),
  ``temperature`` and ``timestamp_granularities[]`` (word, segment); errors as
  ``{"error": {"message", "type", "param", "code"}}``. Existing clients work unchanged.
  Differences: the spoken language is taken from ``language`` (default en), not detected;
  the text ``prompt`` hint is ignored; translations accept ``language`` for the source
  speech; verbose_json's ``avg_logprob`` is null (not computed) and ``no_speech_prob`` is the
  clip's (:mod:`qaudio.vad`). A silent or speech-free clip is answered with empty text, as
  OpenAI answers it.
- ``POST /v1/generate``: any task (``task``, ``lang``, ``to``, ``question``, ``timestamps``,
  ``caption_style``, ``labels``) or a raw tagged ``prompt``; answers ``Result.to_dict()``.
- ``GET /health``: status, model, queue length and batching counters (no key needed).
- ``WS /v1/realtime``: live transcription with voice-activity detection (:mod:`qaudio.realtime`
  documents its messages); the bearer key is checked on the upgrade request.

Dynamic batching: requests wait in an asyncio queue; a collector takes the first, waits up to
``batch_window_ms`` for more (at most ``max_batch``), and runs the batch on the one model
thread. While a batch runs, new requests queue up, so batches grow with load and
throughput with them. Limits: the upload size is checked from the headers and while the
body streams in, before any parsing (413); the duration from the file header before
decoding (400); a full queue answers 503. A bad file (undecodable, empty, NaN/inf) is answered 400 and never reaches the
model; a failing batch is retried item by item so one bad request cannot fail the others.
"""

import argparse
import asyncio
import hmac
import io
import ipaddress
import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import flags
from .audio import Audio, AudioError, load_audio
from .chunking import Segment
from .degeneration import compression_ratio
from .flags import option
from .infer import Pipeline, Request, Result, load, request_from_fields
from .run import ModelOptions
from .specs import get_task, task_names
from .tags import LANGUAGES

if TYPE_CHECKING:
    from .realtime import RealtimeConfig

log = logging.getLogger("qaudio.serve")

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
MAX_CUE_SECONDS = 5.0  # a subtitle cue built from word times spans at most this long
MAX_CUE_CHARS = 42  # and holds at most this many characters (a common subtitle line length)


@dataclass
class ServeConfig:
    """The server's settings; ``qaudio serve``'s flags are made from these fields (:mod:`qaudio.flags`)."""

    host: str = "127.0.0.1"  # address to bind (default: loopback only: exposing the server is an explicit choice)
    port: int = 8000  # TCP port to listen on
    api_key: str | None = (
        None  # require 'Authorization: Bearer KEY' on every route but /health (default: $QAUDIO_API_KEY)
    )
    max_batch: int = 16  # requests per model batch
    batch_window_ms: float = 10.0  # how long the collector waits for more requests after the first
    max_upload_mb: float = 25.0  # largest request body, 413 beyond (OpenAI's limit)
    max_duration_s: float = 600.0  # longest audio, 400 beyond; longer than 30 s is split into windows
    max_queue: int = 512  # waiting requests beyond this are answered 503
    # WS /v1/realtime limits (None: RealtimeConfig's defaults); their flags are qaudio.realtime's
    realtime: "RealtimeConfig | None" = option(None, flag=False)

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("batch_window_ms", "max_upload_mb", "max_duration_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class ApiError(Exception):
    """An error answered as OpenAI's JSON error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        kind = {401: "authentication_error", 413: "invalid_request_error", 503: "server_busy"}.get(
            self.status, "invalid_request_error" if self.status < 500 else "server_error"
        )
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


# ---- Dynamic batching ------------------------------------------------------------------------


class DynamicBatcher:
    """Collects concurrent requests into batches and runs them on one model thread."""

    def __init__(self, model: Pipeline, max_batch: int = 16, window_s: float = 0.01, max_queue: int = 512):
        self.model, self.max_batch, self.window_s, self.max_queue = model, max_batch, window_s, max_queue
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qaudio-model")  # torch runs here only
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0  # counters reported by /health
        self.items = 0
        self.largest_batch = 0

    @property
    def _queue(self) -> asyncio.Queue:
        if self.queue is None:  # made in start(): a queue belongs to the event loop it is made in
            raise RuntimeError("the batcher is not started: call start() in the server's event loop first")
        return self.queue

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def submit(self, audio: Audio, query: Request) -> Result:
        if self._queue.qsize() >= self.max_queue:
            raise ApiError(
                503,
                f"server busy: {self._queue.qsize()} requests waiting (max {self.max_queue}); retry later",
                code="queue_full",
            )
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((audio, query, future))
        return await future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.window_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())  # already waiting: take without delay
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            batch = [b for b in batch if not b[2].done()]  # a client that went away is not computed
            if not batch:
                continue
            self.batches += 1
            self.items += len(batch)
            self.largest_batch = max(self.largest_batch, len(batch))
            results = await loop.run_in_executor(self.executor, self._run, [(a, q) for a, q, _ in batch])
            for (_, _, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _run(self, items: list[tuple[Audio, Request]]) -> list[Result]:
        """Run a batch; if it fails, run its items one by one so only the culprit fails."""
        try:
            return self.model.run([a for a, _ in items], [q for _, q in items])
        except Exception:
            if len(items) == 1:
                log.exception("model failed on a request")
                return [Result(text="", task=items[0][1].name, error="internal error while running the model")]
            return [self._run([item])[0] for item in items]


# ---- Response formats ------------------------------------------------------------------------


def _clock(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def subtitle_cues(result: Result, language: str | None) -> list[Segment]:
    """Cues from word times (at most MAX_CUE_SECONDS and MAX_CUE_CHARS each), else the windows."""
    if not result.words:
        return [s for s in result.segments if s.text]
    sep = "" if language in ("zh", "ja") else " "
    cues: list[Segment] = []
    for w in result.words:
        if cues and (
            w.end - cues[-1].start <= MAX_CUE_SECONDS and len(cues[-1].text) + len(sep) + len(w.word) <= MAX_CUE_CHARS
        ):
            cues[-1] = Segment(cues[-1].start, max(cues[-1].end, w.end), cues[-1].text + sep + w.word)
        else:
            cues.append(Segment(w.start, w.end, w.word))
    return cues


def to_srt(cues: list[Segment]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``."""
    return "".join(f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{c.text}\n\n" for i, c in enumerate(cues, 1))


def to_vtt(cues: list[Segment]) -> str:
    """WebVTT (W3C): a ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues."""
    return "WEBVTT\n\n" + "".join(f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{c.text}\n\n" for c in cues)


def to_verbose_json(result: Result, task: str, temperature: float, granularities: set[str], tokenizer: Any) -> dict:
    """OpenAI's verbose_json transcription object (``TranscriptionVerbose``)."""
    body = {
        "task": task,
        "language": LANGUAGES.get(result.language or "en", result.language or "").lower(),
        "duration": result.timing.get("audio_seconds", 0.0),
        "text": result.text,
    }
    if "segment" in granularities:
        segments = [s for s in result.segments if s.text]
        if not segments and result.no_speech_prob is not None:  # no speech: one empty segment carries the verdict
            segments = [Segment(0.0, body["duration"], "")]
        body["segments"] = [
            {
                "id": i,
                "seek": round(s.start * 100),
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": tokenizer.encode(s.text, add_special_tokens=False),
                "temperature": temperature,
                "avg_logprob": None,
                "compression_ratio": round(compression_ratio(s.text), 4),
                "no_speech_prob": result.no_speech_prob,
            }
            for i, s in enumerate(segments)
        ]
    if "word" in granularities:
        body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in result.words or []]
    return body


# ---- The app ---------------------------------------------------------------------------------


class _Guard:
    """ASGI middleware: bearer key and upload size, checked before the body is parsed."""

    def __init__(self, app: Any, config: ServeConfig):  # app: the ASGI app it guards
        self.app, self.config = app, config

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.config.api_key and scope["path"] != "/health":
            given = headers.get("authorization", "")
            expected = f"Bearer {self.config.api_key}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return await _send_error(
                    send,
                    ApiError(401, "missing or wrong API key; send 'Authorization: Bearer KEY'", code="invalid_api_key"),
                )
        limit = self.config.max_upload_bytes
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _send_error(send, _too_large(int(length), limit))
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(received)
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge as e:
            if not started:
                await _send_error(send, _too_large(e.size, limit, streamed=True))


class _BodyTooLarge(Exception):
    def __init__(self, size: int):
        self.size = size


def _too_large(size: int, limit: int, streamed: bool = False) -> ApiError:
    got = f"more than {limit}" if streamed else str(size)
    return ApiError(
        413,
        f"upload is {got} bytes; this server accepts at most {limit} bytes (--max-upload-mb)",
        code="upload_too_large",
    )


async def _send_error(send: Callable[[dict], Awaitable[None]], error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(model: Pipeline, config: ServeConfig | None = None) -> _Guard:
    """The FastAPI app for ``model`` (wrapped in the key/size guard)."""
    from fastapi import FastAPI
    from fastapi import Request as HTTPRequest  # Request alone is qaudio's model request (infer.Request)
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile

    config = config or ServeConfig()
    batcher = DynamicBatcher(model, config.max_batch, config.batch_window_ms / 1000, config.max_queue)

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="qaudio", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(ApiError)
    async def api_error(request: HTTPRequest, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    async def read_form(request: HTTPRequest) -> tuple[dict, bytes, str]:
        """The form fields, the ``file`` bytes and its name; errors are 400s naming the problem."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(400, "expected a multipart/form-data body with a 'file' field", param="file")
        try:
            form = await request.form(max_files=1, max_fields=32)
        except _BodyTooLarge as e:  # raised by the guard while the body streams in
            raise _too_large(e.size, config.max_upload_bytes, streamed=True) from None
        except Exception as e:
            raise ApiError(400, f"cannot parse the multipart body: {e}") from None
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "missing the 'file' field (the audio file, sent as a multipart file)", param="file")
        data = await upload.read()
        name = upload.filename or "file"
        fields: dict[str, Any] = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        fields["timestamp_granularities"] = form.getlist("timestamp_granularities[]") + form.getlist(
            "timestamp_granularities"
        )
        return fields, data, name

    async def decode(data: bytes, name: str) -> Audio:
        """Decoding runs in a worker thread, off the event loop (after the cheap checks of the fields)."""
        return await run_in_threadpool(_decode_upload, data, name, config.max_duration_s)

    async def answer(clip: Audio, query: Request) -> Result:
        result = await batcher.submit(clip, query)
        if not result.ok:
            raise ApiError(500, result.error or "the model failed on this input", code="model_error")
        return result

    def formatted(result: Result, fields: dict, task: str) -> Response:
        fmt = fields.get("response_format") or "json"
        if fmt == "text":
            return PlainTextResponse(result.text + "\n")
        if fmt in ("srt", "vtt"):
            cues = subtitle_cues(result, result.language)
            return PlainTextResponse(to_srt(cues) if fmt == "srt" else to_vtt(cues))
        if fmt == "verbose_json":
            granularities = set(fields["timestamp_granularities"] or ["segment"])
            temperature = _float_field(fields, "temperature", 0.0)
            return JSONResponse(to_verbose_json(result, task, temperature, granularities, model.tokenizer))
        return JSONResponse({"text": result.text})

    def openai_query(fields: dict, task: str) -> Request:
        fmt = fields.get("response_format") or "json"
        if fmt not in RESPONSE_FORMATS:
            raise ApiError(
                400,
                f"unknown response_format {fmt!r}; valid choices: {', '.join(RESPONSE_FORMATS)}",
                param="response_format",
            )
        granularities = fields["timestamp_granularities"]
        bad = [g for g in granularities if g not in ("word", "segment")]
        if bad:
            raise ApiError(
                400,
                f"unknown timestamp_granularities {bad}; valid choices: word, segment",
                param="timestamp_granularities",
            )
        language = fields.get("language") or None
        if language is not None and language not in LANGUAGES:
            raise ApiError(
                400, f"unsupported language {language!r}; valid choices: {', '.join(LANGUAGES)}", param="language"
            )
        temperature = _float_field(fields, "temperature", 0.0)
        kwargs = {"do_sample": True, "temperature": temperature} if temperature > 0 else {}
        # Word times drive subtitle cues and verbose_json words: ask the model for them then.
        want_words = task == "transcribe" and (
            fmt in ("srt", "vtt") or (fmt == "verbose_json" and "word" in granularities)
        )
        if task == "transcribe":
            return get_task("asr").request(language, timestamps=want_words, generate_kwargs=kwargs)
        return get_task("s2tt").request(language, "en", generate_kwargs=kwargs)

    @app.get("/health")
    async def health():
        # The model's name only, not its path: /health answers callers without a key.
        return {
            "status": "ok",
            "model": Path(model.name).name,
            "queue": batcher.queue.qsize() if batcher.queue else 0,
            "batches": batcher.batches,
            "requests": batcher.items,
            "largest_batch": batcher.largest_batch,
            "max_batch": config.max_batch,
        }

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: HTTPRequest) -> Response:
        fields, data, name = await read_form(request)
        query = openai_query(fields, "transcribe")
        return formatted(await answer(await decode(data, name), query), fields, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: HTTPRequest) -> Response:
        fields, data, name = await read_form(request)
        query = openai_query(fields, "translate")
        return formatted(await answer(await decode(data, name), query), fields, "translate")

    @app.post("/v1/generate")
    async def generate(request: HTTPRequest) -> Response:
        fields, data, name = await read_form(request)
        prompt, task = fields.get("prompt") or None, fields.get("task") or "asr"
        # Built-in names only: a task given by file path would run that file's code on the server.
        known = task_names()
        if not prompt and task not in known:
            raise ApiError(400, f"unknown task {task!r}; valid choices: {', '.join(known)}", param="task")
        generate_kwargs = {}
        if "max_new_tokens" in fields:
            n = _float_field(fields, "max_new_tokens", 0)
            limit = model.model.config.llm.max_positions
            if not (1 <= n <= limit and n == int(n)):
                raise ApiError(
                    400,
                    f"max_new_tokens must be an integer in 1..{limit} (the LLM's positions), "
                    f"got {fields['max_new_tokens']!r}",
                    param="max_new_tokens",
                )
            generate_kwargs["max_new_tokens"] = int(n)
        try:
            query = request_from_fields(
                None if prompt else get_task(task),
                prompt=prompt,
                lang=fields.get("lang") or None,
                to=fields.get("to") or None,
                timestamps=fields.get("timestamps", "").lower() in ("1", "true", "yes"),
                question=fields.get("question") or None,
                caption_style=fields.get("caption_style") or "clotho",
                labels=fields.get("labels") or None,
                generate_kwargs=generate_kwargs,
            )
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        return JSONResponse((await answer(await decode(data, name), query)).to_dict())

    from .realtime import add_realtime_route

    add_realtime_route(app, model, batcher, config.api_key, config.realtime)
    return _Guard(app, config)


def _float_field(fields: dict, name: str, default: float) -> float:
    value = fields.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except ValueError:
        raise ApiError(400, f"{name} must be a number, got {value!r}", param=name) from None
    if not math.isfinite(number) or number < 0:
        raise ApiError(400, f"{name} must be a non-negative number, got {value!r}", param=name)
    return number


def _decode_upload(data: bytes, name: str, max_duration_s: float) -> Audio:
    """Bytes -> Audio; the duration is checked from the header first, so a small file that
    decodes to hours of audio is refused before it is decoded."""
    import soundfile as sf

    if not data:
        raise ApiError(400, f"{name}: the uploaded file is empty", param="file")
    try:
        duration = sf.info(io.BytesIO(data)).duration
    except Exception:
        duration = None  # not a libsndfile format (e.g. some mp3): checked after decoding
    if duration is not None and duration > max_duration_s:
        raise ApiError(
            400,
            f"{name}: audio is {duration:.1f} s long; this server accepts at most {max_duration_s:g} s "
            "(--max-duration-s)",
            param="file",
            code="audio_too_long",
        )
    try:
        clip = load_audio(data, allow_silence=True)  # silence is answered (no_speech), not refused
    except AudioError as e:
        # load_audio names bytes "<N bytes>" and libsndfile names the stream object: name the upload instead.
        message = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", name, str(e).split(": ", 1)[-1])
        raise ApiError(400, f"{name}: {message}", param="file", code="invalid_audio") from None
    if clip.duration > max_duration_s:
        raise ApiError(
            400,
            f"{name}: audio is {clip.duration:.1f} s long; this server accepts at most {max_duration_s:g} s "
            "(--max-duration-s)",
            param="file",
            code="audio_too_long",
        )
    return Audio(clip.samples, name)


# ---- Running it ------------------------------------------------------------------------------


class BackgroundServer:
    """Run the app with uvicorn in a thread (tests, notebooks): ``with BackgroundServer(app) as url: ...``."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.host = host

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (see the log above)")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .realtime import add_arguments as add_realtime_arguments

    parser.add_argument("model", help="a saved model directory (or hub id)")
    flags.add_arguments(parser, ServeConfig)
    flags.add_arguments(parser, ModelOptions)
    add_realtime_arguments(parser)


def main(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from .realtime import config_from_args as realtime_config_from_args

    api_key = args.api_key or os.environ.get("QAUDIO_API_KEY") or None
    config = flags.from_args(ServeConfig, args, api_key=api_key, realtime=realtime_config_from_args(args))
    options = flags.from_args(ModelOptions, args)
    if not _is_loopback(config.host) and not api_key:
        print(
            f"qaudio serve: warning: binding {config.host} without --api-key: anyone who can reach it can use it",
            file=sys.stderr,
        )
    model = load(
        args.model,
        device=options.device,
        dtype=options.dtype,
        max_new_tokens=options.max_new_tokens,
        quantize=options.quantize,
    )
    print(
        f"qaudio serve: {args.model} on http://{config.host}:{config.port} "
        f"(max batch {config.max_batch}, window {config.batch_window_ms:g} ms)",
        file=sys.stderr,
    )
    uvicorn.run(create_app(model, config), host=config.host, port=config.port, log_level="info")
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
