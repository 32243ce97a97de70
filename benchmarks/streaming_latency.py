"""Streaming latency of ``WS /v1/realtime``: a recording streamed at recording pace on loopback.

    python -m benchmarks.streaming_latency MODEL_DIR [--wav FILE] [--chunk-s 0.1] [--max-new-tokens N] [--json FILE]

Without ``--wav`` the recording is three eSpeak sentences separated by 1 s pauses (the true
end of each utterance is then known; with ``--wav`` it is taken from offline VAD spans).
Printed per utterance and on average:

- end of speech -> ``speech_stopped``: the endpointing delay (the VAD's ``min_silence_ms``
  plus its 32 ms frames and the chunk size, by design);
- end of speech -> ``completed``: what a user waits for the final transcript;
- the final's model compute alone (the same audio through ``model.transcribe`` offline), the
  reference the streaming overhead is read against;
- time between partial transcripts while speaking.

Also checks that every streamed final equals the offline transcript of the same samples.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time

import numpy as np

SR = 16_000
EVENT = "conversation.item.input_audio_transcription"


def synthetic_recording(pause: float = 1.0) -> tuple[np.ndarray, list[float]]:
    from qaudio.synth.espeak import synthesize

    sentences = [
        "the quick brown fox jumps over the lazy dog",
        "she sells sea shells by the sea shore",
        "a large red ball rolls down the hill",
    ]
    parts, ends, t = [np.zeros(int(pause / 2 * SR), np.float32)], [], pause / 2
    for s in sentences:
        clip = synthesize(s, voice="en", rate=170)
        a, b = int(clip.words[0][1] * SR), int(clip.words[-1][2] * SR)
        parts += [clip.samples[a:b], np.zeros(int(pause * SR), np.float32)]
        t += (b - a) / SR
        ends.append(t)
        t += pause
    x = np.concatenate(parts)
    return (x + 0.002 * np.random.default_rng(0).standard_normal(len(x))).astype(np.float32), ends


async def stream(url: str, pcm: np.ndarray, chunk_s: float, n_finals: int):
    from websockets.asyncio.client import connect

    events = []
    async with connect(url) as ws:
        await ws.recv()

        async def receive():
            finals = 0
            while finals < n_finals:
                event = json.loads(await ws.recv())
                events.append((time.monotonic(), event))
                finals += event["type"] in (f"{EVENT}.completed", f"{EVENT}.failed")

        receiver = asyncio.create_task(receive())
        chunk = int(chunk_s * SR)
        t0 = time.monotonic()
        for k in range(0, len(pcm), chunk):
            data = base64.b64encode(pcm[k : k + chunk].tobytes()).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": data}))
            await asyncio.sleep(max(0.0, t0 + (k + chunk) / SR - time.monotonic()))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await asyncio.wait_for(receiver, 120)
    return events, t0


def main() -> None:
    import qaudio
    from qaudio.serve import BackgroundServer, create_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--wav", default=None)
    parser.add_argument("--chunk-s", type=float, default=0.1)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, help="generation cap (an untrained model never stops)"
    )
    args = parser.parse_args()

    if args.wav:
        from qaudio.audio import load_audio
        from qaudio.vad import speech_spans

        x = load_audio(args.wav).samples
        ends = [e / SR for _, e in speech_spans(x)]
    else:
        x, ends = synthetic_recording()
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    audio = pcm.astype(np.float32) / 32768.0  # what the server receives
    model = qaudio.load(args.model, device="cpu", max_new_tokens=args.max_new_tokens)
    with BackgroundServer(create_app(model)) as url:
        events, t0 = asyncio.run(stream(url.replace("http://", "ws://") + "/v1/realtime", pcm, args.chunk_s, len(ends)))
    finals = [(t, e) for t, e in events if e["type"] == f"{EVENT}.completed"]
    rows = []
    for (t_final, e), end in zip(finals, ends):
        item = e["item_id"]
        stopped = next(
            t for t, ev in events if ev["type"] == "input_audio_buffer.speech_stopped" and ev["item_id"] == item
        )
        partials = [t for t, ev in events if ev["type"] == f"{EVENT}.partial" and ev["item_id"] == item]
        a, b = e["audio_start_ms"] * SR // 1000, e["audio_end_ms"] * SR // 1000
        c0 = time.perf_counter()
        offline = model.transcribe((audio[a:b], SR), timestamps=True)
        compute = time.perf_counter() - c0
        rows.append(
            {
                "utterance": item,
                "speech_end_s": round(end, 3),
                "to_stopped_ms": round((stopped - t0 - end) * 1000),
                "to_final_ms": round((t_final - t0 - end) * 1000),
                "offline_compute_ms": round(compute * 1000),
                "partials": len(partials),
                "partial_gaps_ms": [round(g * 1000) for g in np.diff(partials)],
                "equals_offline": e["transcript"] == offline.text,
                "transcript": e["transcript"],
            }
        )
    gaps = [g for r in rows for g in r["partial_gaps_ms"]]
    summary = {
        "utterances": len(rows),
        "chunk_s": args.chunk_s,
        "to_stopped_ms_mean": round(float(np.mean([r["to_stopped_ms"] for r in rows]))),
        "to_final_ms_mean": round(float(np.mean([r["to_final_ms"] for r in rows]))),
        "to_final_ms_max": max(r["to_final_ms"] for r in rows),
        "offline_compute_ms_mean": round(float(np.mean([r["offline_compute_ms"] for r in rows]))),
        "partial_gap_ms_mean": round(float(np.mean(gaps))) if gaps else None,
        "partial_gap_ms_max": max(gaps) if gaps else None,
        "all_equal_offline": all(r["equals_offline"] for r in rows),
    }
    for r in rows:
        print(json.dumps(r, ensure_ascii=False))
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"utterances": rows, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
