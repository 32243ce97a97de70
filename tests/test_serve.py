"""The HTTP server on loopback with a tiny model: the real ``openai`` client, limits, bad files,
the bearer key, and a bounded load test of mixed good and bad requests.

Every good answer is checked against the same model called directly (fp32 batching is
invariant, so a request's answer must not depend on what it was batched with).
"""

from __future__ import annotations

import asyncio
import io
import random
import time

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from test_infer_model import MAX_NEW_TOKENS, _clip, tiny_model_dir

import qaudio
from qaudio.serve import BackgroundServer, ServeConfig, create_app
from qaudio.specs import get_task

SR = 16_000
KEY = "test-key"
MAX_UPLOAD_MB = 2.0
MAX_DURATION_S = 60.0


def _wav(x: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    model = qaudio.load(tiny_model_dir(tmp_path_factory.mktemp("tiny")), device="cpu")
    model.max_new_tokens = MAX_NEW_TOKENS
    config = ServeConfig(
        api_key=KEY, max_batch=16, batch_window_ms=10, max_upload_mb=MAX_UPLOAD_MB, max_duration_s=MAX_DURATION_S
    )
    app = create_app(model, config)
    with BackgroundServer(app) as url:
        assert url.startswith("http://127.0.0.1:")
        yield url, model


@pytest.fixture(scope="module")
def client(served):
    url, _ = served
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def clip():
    return _clip(2.0, 1)


def test_health_is_open_and_everything_else_needs_the_key(served, clip):
    url, _ = served
    h = httpx.get(f"{url}/health")
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["queue"] == 0
    assert "/" not in h.json()["model"]  # the model's name, not its path
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.post(f"{url}/v1/audio/transcriptions", headers=headers, files={"file": ("a.wav", _wav(clip))})
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    bad = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.audio.transcriptions.create(model="qaudio", file=("a.wav", _wav(clip)))


def test_openai_client_transcription_with_word_timestamps(client, served, clip):
    _, model = served
    expected = model.transcribe((clip, SR), timestamps=True)
    r = client.audio.transcriptions.create(
        model="qaudio",
        file=("speech.wav", _wav(clip), "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert r.text == expected.text and r.language == "english" and r.duration == pytest.approx(2.0)
    assert [(w.word, w.start, w.end) for w in r.words] == [(w.word, w.start, w.end) for w in expected.words or []]
    assert len(r.segments) == len([s for s in expected.segments if s.text])
    plain = model.transcribe((clip, SR))
    assert client.audio.transcriptions.create(model="qaudio", file=("a.wav", _wav(clip))).text == plain.text
    text = client.audio.transcriptions.create(model="qaudio", file=("a.wav", _wav(clip)), response_format="text")
    assert text.strip() == plain.text


def test_openai_client_subtitles_and_translation(client, served, clip):
    _, model = served
    srt = client.audio.transcriptions.create(model="qaudio", file=("a.wav", _wav(clip)), response_format="srt")
    vtt = client.audio.transcriptions.create(model="qaudio", file=("a.wav", _wav(clip)), response_format="vtt")
    assert vtt.startswith("WEBVTT")
    expected = model.transcribe((clip, SR), timestamps=True)
    if expected.text:  # a cue per group of words (or the one window when no times were parsed)
        assert srt.startswith("1\n00:00:") and " --> " in srt and expected.text.split()[0] in srt
    r = client.audio.translations.create(model="qaudio", file=("a.wav", _wav(clip)))
    assert r.text == model.translate((clip, SR), to="en").text


def test_bad_uploads_get_clear_errors_and_the_server_stays_up(client, served, clip):
    url, _ = served
    with pytest.raises(openai.BadRequestError, match="notes.txt.*cannot decode audio") as e:
        client.audio.transcriptions.create(model="qaudio", file=("notes.txt", b"hello, not audio" * 50))
    assert "BytesIO" not in e.value.response.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.audio.transcriptions.create(model="qaudio", file=("empty.wav", b""))
    # Silence is an answer: empty text, and no_speech_prob 1 in verbose_json (as OpenAI answers it).
    quiet = client.audio.transcriptions.create(
        model="qaudio", file=("quiet.wav", _wav(np.zeros(SR, np.float32))), response_format="verbose_json"
    )
    assert quiet.text == "" and quiet.segments[0].no_speech_prob == 1.0
    nan = clip.copy()
    nan[::100] = np.nan
    with pytest.raises(openai.BadRequestError, match="NaN"):
        client.audio.transcriptions.create(model="qaudio", file=("nan.wav", _wav(nan, subtype="FLOAT")))
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.audio.transcriptions.create(model="qaudio", file=("a.wav", _wav(clip)), response_format="xml")
    with pytest.raises(openai.BadRequestError, match="unsupported language 'xx'"):
        client.audio.transcriptions.create(model="qaudio", file=("a.wav", _wav(clip)), language="xx")
    # Longer than --max-duration-s, though small (8 kHz): refused from the header, before decoding.
    long = np.tile(_clip(1.0, 2), 70)
    with pytest.raises(openai.BadRequestError, match="70.0 s long; this server accepts at most 60 s"):
        client.audio.transcriptions.create(model="qaudio", file=("long.wav", _wav(long[::2], 8000)))
    with pytest.raises(openai.APIStatusError) as e:
        client.audio.transcriptions.create(model="qaudio", file=("big.wav", b"\0" * int(3 * 1024 * 1024)))
    assert e.value.status_code == 413 and "at most" in e.value.response.json()["error"]["message"]

    auth = {"Authorization": f"Bearer {KEY}"}

    def chunks():  # no Content-Length: the size is checked while the body streams in
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 100_000

    r = httpx.post(
        f"{url}/v1/audio/transcriptions",
        headers={**auth, "content-type": "multipart/form-data; boundary=x"},
        content=chunks(),
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
    r = httpx.post(f"{url}/v1/audio/transcriptions", headers=auth, data={"model": "qaudio"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/audio/transcriptions", headers=auth, files={"other": ("a.wav", _wav(clip))})
    assert r.status_code == 400 and "'file'" in r.json()["error"]["message"]
    assert httpx.get(f"{url}/health").status_code == 200
    assert client.audio.transcriptions.create(model="qaudio", file=("a.wav", _wav(clip))).text is not None


def test_generate_route_any_task_or_raw_prompt(served, clip):
    url, model = served
    auth = {"Authorization": f"Bearer {KEY}"}
    files = {"file": ("a.wav", _wav(clip))}
    r = httpx.post(f"{url}/v1/generate", headers=auth, files=files, data={"task": "ser"})
    assert r.status_code == 200
    body = r.json()
    assert (
        body["task"] == "ser"
        and body["label"] in get_task("ser").labels
        and body["label"] == model.classify((clip, SR)).label
    )
    r = httpx.post(
        f"{url}/v1/generate",
        headers=auth,
        files=files,
        data={"task": "aqa", "question": "Is someone speaking?", "max_new_tokens": "3"},
    )
    assert (
        r.status_code == 200 and r.json()["raw"] == model.ask((clip, SR), "Is someone speaking?", max_new_tokens=3).raw
    )
    prompt = "<|startofanalysis|><|unknown|><|caption|><|en|><|notimestamps|><|caption_plain|>"
    r = httpx.post(f"{url}/v1/generate", headers=auth, files=files, data={"prompt": prompt})
    assert (
        r.status_code == 200
        and r.json()["task"] == "generate"
        and r.json()["raw"] == model.generate((clip, SR), prompt).raw
    )
    r = httpx.post(f"{url}/v1/generate", headers=auth, files=files, data={"task": "nope"})
    assert r.status_code == 400 and "unknown task 'nope'" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/generate", headers=auth, files=files, data={"task": __file__})  # never run files
    assert r.status_code == 400 and "unknown task" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/generate", headers=auth, files=files, data={"task": "emotion"})
    assert r.status_code == 200 and r.json()["task"] == "ser"
    r = httpx.post(f"{url}/v1/generate", headers=auth, files=files, data={"task": "aqa"})
    assert r.status_code == 400 and "question" in r.json()["error"]["message"]


@pytest.mark.slow
def test_load_mixed_requests_are_all_answered_correctly(served):
    """A few hundred concurrent requests (about 1 in 6 bad) on loopback; prints latency and throughput."""
    url, model = served
    clips = [_clip(s, 100 + i) for i, s in enumerate((0.7, 1.2, 2.0, 3.1, 4.5, 6.0))]
    kinds = {  # name -> (route, form fields, expected answer from a direct call)
        "asr": ("/v1/audio/transcriptions", {"model": "qaudio"}, lambda c: {"text": model.transcribe((c, SR)).text}),
        "asr_text": (
            "/v1/audio/transcriptions",
            {"model": "qaudio", "response_format": "text"},
            lambda c: model.transcribe((c, SR)).text + "\n",
        ),
        "translate": ("/v1/audio/translations", {"model": "qaudio"}, lambda c: {"text": model.translate((c, SR)).text}),
        "ser": ("/v1/generate", {"task": "ser"}, lambda c: model.classify((c, SR)).label),
        "aac": ("/v1/generate", {"task": "aac"}, lambda c: model.caption((c, SR)).raw),
    }
    expected = {(k, i): kind[2](c) for k, kind in kinds.items() for i, c in enumerate(clips)}
    wavs = [_wav(c) for c in clips]
    bad = [  # (file bytes, headers override, expected status)
        (b"garbage" * 100, None, 400),
        (b"", None, 400),
        (_wav(np.full(SR, np.nan, np.float32), subtype="FLOAT"), None, 400),  # NaN (silence is answered)
        (b"\0" * int(2.5 * 1024 * 1024), None, 413),
        (wavs[0], {"Authorization": "Bearer nope"}, 401),
    ]
    rng = random.Random(0)
    plan = [("good", rng.choice(list(kinds)), rng.randrange(len(clips))) for _ in range(260)]
    plan += [("bad", i % len(bad), None) for i in range(50)]
    rng.shuffle(plan)
    auth = {"Authorization": f"Bearer {KEY}"}

    async def one(client, sem, item):
        kind, a, b = item
        async with sem:
            t0 = time.perf_counter()
            if kind == "good":
                route, data, _ = kinds[a]
                r = await client.post(route, headers=auth, data=data, files={"file": ("clip.wav", wavs[b])})
            else:
                payload, headers, _ = bad[a]
                r = await client.post(
                    "/v1/audio/transcriptions",
                    headers=headers or auth,
                    files={"file": ("bad.wav", payload)},
                    data={"model": "qaudio"},
                )
            return item, r, time.perf_counter() - t0

    async def go(concurrency, items):
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            t0 = time.perf_counter()
            out = await asyncio.wait_for(asyncio.gather(*(one(client, sem, it) for it in items)), timeout=240)
            return out, time.perf_counter() - t0

    before = httpx.get(f"{url}/health").json()
    out, wall = asyncio.run(go(32, plan))
    after = httpx.get(f"{url}/health").json()
    latencies = []
    for (kind, a, b), r, seconds in out:
        if kind == "bad":
            assert r.status_code == bad[a][2], (a, r.status_code, r.text)
            assert "message" in r.json()["error"]
            continue
        assert r.status_code == 200, r.text
        latencies.append(seconds)
        if a == "asr_text":
            got = r.text
        elif a in ("asr", "translate"):
            got = r.json()
        else:
            got = r.json()["label"] if a == "ser" else r.json()["raw"]
        assert got == expected[(a, b)], (a, b)
    assert after["status"] == "ok"
    batches = after["batches"] - before["batches"]
    served_requests = after["requests"] - before["requests"]
    assert served_requests == 260 and after["largest_batch"] > 1  # batched dynamically

    sequential, seq_wall = asyncio.run(go(1, [("good", "asr", i % len(clips)) for i in range(30)]))
    lat = np.array(latencies)
    print(
        f"\nload test: {len(plan)} requests ({len(latencies)} good) at concurrency 32 in {wall:.2f} s: "
        f"{len(latencies) / wall:.1f} good req/s, latency p50 {np.percentile(lat, 50) * 1000:.0f} ms, "
        f"p95 {np.percentile(lat, 95) * 1000:.0f} ms, mean batch {served_requests / batches:.1f} "
        f"(largest {after['largest_batch']}); sequential (concurrency 1): {30 / seq_wall:.1f} req/s, "
        f"p50 {np.median([s for _, _, s in sequential]) * 1000:.0f} ms"
    )
