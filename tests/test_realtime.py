"""The streaming route ``WS /v1/realtime`` with a real websocket client on loopback, and
``qaudio run --stream / --vad`` on the same recording.

A synthetic three-utterance recording (eSpeak speech, pauses of faint noise) is streamed at
recording pace; every final transcript must equal the offline path on exactly the audio the
server says the utterance spans (a tiny random model's words are noise, so equality with the
offline answer is the check, not the text). Latency figures are printed (run with -s).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("silero_vad")
websockets = pytest.importorskip("websockets")
from test_infer_model import MAX_NEW_TOKENS, tiny_model_dir  # noqa: E402
from test_vad import SR, recording  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

import qaudio  # noqa: E402
from qaudio.cli import main as cli_main  # noqa: E402
from qaudio.realtime import RealtimeConfig  # noqa: E402
from qaudio.serve import BackgroundServer, ServeConfig, create_app  # noqa: E402

KEY = "stream-key"
CHUNK_S = 0.1  # a typical capture buffer
EVENT = "conversation.item.input_audio_transcription"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    model_dir = tiny_model_dir(tmp_path_factory.mktemp("tiny"))
    model = qaudio.load(model_dir, device="cpu")
    model.max_new_tokens = MAX_NEW_TOKENS
    app = create_app(
        model,
        ServeConfig(api_key=KEY, realtime=RealtimeConfig(max_session_s=20.0, max_message_kb=64.0, max_sessions=2)),
    )
    with BackgroundServer(app) as url:
        yield url.replace("http://", "ws://") + "/v1/realtime", model, model_dir


@pytest.fixture(scope="module")
def speech():
    return recording(3, pause=1.0)


def _append(samples: np.ndarray) -> str:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})


def _pcm(samples: np.ndarray) -> np.ndarray:
    """What the server receives: the samples after the PCM16 round trip."""
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").astype(np.float32) / 32768.0


async def _stream(url: str, x: np.ndarray, n_finals: int) -> tuple[list[tuple[float, dict]], float]:
    """Send ``x`` at recording pace; collect (arrival time, event) until ``n_finals`` finals came."""
    events: list[tuple[float, dict]] = []
    async with connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
        created = json.loads(await ws.recv())
        assert created["type"] == "transcription_session.created"
        await ws.send(
            json.dumps(
                {"type": "transcription_session.update", "session": {"input_audio_transcription": {"language": "en"}}}
            )
        )
        assert json.loads(await ws.recv())["type"] == "transcription_session.updated"

        async def receive():
            finals = 0
            while finals < n_finals:
                event = json.loads(await ws.recv())
                events.append((time.monotonic(), event))
                finals += event["type"] in (f"{EVENT}.completed", f"{EVENT}.failed")

        receiver = asyncio.create_task(receive())
        chunk = int(CHUNK_S * SR)
        t0 = time.monotonic()
        for k in range(0, len(x), chunk):
            await ws.send(_append(x[k : k + chunk]))
            await asyncio.sleep(max(0.0, t0 + (k + chunk) / SR - time.monotonic()))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await asyncio.wait_for(receiver, 60)
    return events, t0


@pytest.mark.slow  # streams at recording pace: about 10 s of audio
def test_streamed_finals_equal_the_offline_path_with_latency(served, speech, tmp_path, capsys):
    url, model, model_dir = served
    x, truth = speech
    events, t0 = asyncio.run(_stream(url, x, n_finals=3))
    kinds = [e["type"] for _, e in events]
    finals = [(t, e) for t, e in events if e["type"] == f"{EVENT}.completed"]
    assert len(finals) == 3 and kinds.count("input_audio_buffer.speech_started") == 3
    ids = [e["item_id"] for _, e in finals]
    assert len(set(ids)) == 3 and ids == sorted(ids)  # one final per utterance, in order
    audio = _pcm(x)
    partial_gaps, end_to_final, end_to_stopped = [], [], []
    for (t_final, final), (true_start, true_end) in zip(finals, truth):
        start, end = final["audio_start_ms"] * SR // 1000, final["audio_end_ms"] * SR // 1000
        assert abs(start / SR - true_start) < 0.15 and abs(end / SR - true_end) < 0.5
        offline = model.transcribe((audio[start:end], SR), timestamps=True)
        assert final["transcript"] == offline.text
        assert [(w["word"], w["start"], w["end"]) for w in final["words"]] == [
            (w.word, round(w.start + start / SR, 3), round(w.end + start / SR, 3)) for w in offline.words or []
        ]
        item = final["item_id"]
        times = [t for t, e in events if e["type"] == f"{EVENT}.partial" and e["item_id"] == item]
        stopped = next(
            t for t, e in events if e["type"] == "input_audio_buffer.speech_stopped" and e["item_id"] == item
        )
        assert times and max(times) < stopped < t_final  # partials while speaking, none after its end
        partial_gaps += list(np.diff(times))
        end_to_final.append(t_final - (t0 + true_end))  # the true end of speech was sent at t0 + true_end
        end_to_stopped.append(stopped - (t0 + true_end))
    with capsys.disabled():
        print(
            f"\nstreaming latency over {len(finals)} utterances: end of speech -> speech_stopped "
            f"{np.mean(end_to_stopped) * 1000:.0f} ms (max {np.max(end_to_stopped) * 1000:.0f}); "
            f"-> final {np.mean(end_to_final) * 1000:.0f} ms (max {np.max(end_to_final) * 1000:.0f}); "
            f"between partials {np.mean(partial_gaps) * 1000:.0f} ms (max {np.max(partial_gaps) * 1000:.0f}, "
            f"{len(partial_gaps) + len(finals)} partials)"
            if partial_gaps
            else ""
        )

    # The same recording through `qaudio run --stream`: the same utterances and transcripts.
    wav = tmp_path / "speech.wav"
    sf.write(wav, x, SR, subtype="PCM_16")
    capsys.readouterr()
    assert cli_main(["run", model_dir, str(wav), "--stream", "--json", "--max-new-tokens", str(MAX_NEW_TOKENS)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    cli_finals = [line for line in lines if line["type"] == "final"]
    assert any(line["type"] == "partial" for line in lines)
    assert [(f["start"], f["end"], f["text"]) for f in cli_finals] == [
        (e["audio_start_ms"] / 1000, e["audio_end_ms"] / 1000, e["transcript"]) for _, e in finals
    ]


def test_run_vad_answers_each_utterance(served, speech, tmp_path, capsys):
    _, model, model_dir = served
    x, truth = speech
    wav = tmp_path / "speech.wav"
    sf.write(wav, x, SR, subtype="PCM_16")
    assert cli_main(["run", model_dir, str(wav), "--vad", "--json", "--max-new-tokens", str(MAX_NEW_TOKENS)]) == 0
    segments = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(segments) == 3
    audio = sf.read(wav, dtype="float32")[0]
    for seg, (ts, te) in zip(segments, truth):
        assert abs(seg["start"] - ts) < 0.15 and abs(seg["end"] - te) < 0.5
        piece = audio[int(round(seg["start"] * SR)) : int(round(seg["end"] * SR))]
        assert seg["text"] == model.transcribe((piece, SR)).text


@pytest.mark.slow  # ends with a 3 s stream at recording pace
def test_key_limits_bad_messages_and_disconnects(served, speech):
    url, model, _ = served
    x, _ = speech
    auth = {"Authorization": f"Bearer {KEY}"}

    async def scenario():
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with connect(url, additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 403
        # Bad messages get an error event; the session goes on.
        async with connect(url, additional_headers=auth) as ws:
            await ws.recv()
            for bad, code in (
                ("not json", "invalid_event"),
                (json.dumps({"type": "nope"}), "unknown_event"),
                (json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}), "invalid_audio"),
                (b"\x00\x01\x02", "invalid_audio"),
            ):
                await ws.send(bad)
                assert json.loads(await ws.recv())["error"]["code"] == code
            # A message over --max-message-kb (64 kB) closes the session with 1009.
            await ws.send(b"\x00" * (65 * 1024))
            assert json.loads(await ws.recv())["error"]["code"] == "message_too_large"
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 1009
        # More than --max-session-s (20 s) of audio closes the session with 1008.
        async with connect(url, additional_headers=auth) as ws:
            await ws.recv()
            silence = np.zeros(SR, "<i2").tobytes()
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                for _ in range(25):
                    await ws.send(silence)
                while True:
                    event = json.loads(await ws.recv())
                    assert event["type"] == "error" and event["error"]["code"] == "session_too_long"
            assert closed.value.rcvd.code == 1008
        # A client that vanishes mid-utterance (while its partials are queued) leaves the server working.
        for _ in range(2):
            ws = await connect(url, additional_headers=auth)
            await ws.recv()
            for k in range(0, int(1.5 * SR), 1600):
                await ws.send(_append(x[k : k + 1600]))
            ws.transport.abort()
        await asyncio.sleep(0.5)
        events, _ = await _stream(url, x[: int(3.2 * SR)], n_finals=1)
        return events

    events = asyncio.run(scenario())
    assert any(e["type"] == f"{EVENT}.completed" for _, e in events)


def test_an_utterance_longer_than_the_window_is_cut_without_losing_audio(speech):
    from qaudio.realtime import Utterances

    x, truth = speech
    engine = Utterances(max_utterance_s=1.0, partial_every_s=0.25)
    events = []
    for k in range(0, len(x), 1600):
        events += engine.feed(x[k : k + 1600])
    events += engine.flush()
    finals = [e for e in events if e.kind == "final"]
    assert all(e.end - e.start <= SR for e in finals)
    assert len(finals) > len(truth)  # each ~2 s utterance became several pieces
    # Within one utterance the pieces are contiguous: the next begins where the last was cut.
    for ts, te in truth:
        inside = [e for e in finals if ts - 0.2 < e.start / SR < te]
        assert all(b.start == a.end for a, b in zip(inside, inside[1:]))
    for e in (e for e in events if e.kind == "partial"):
        assert e.end - e.start <= SR
