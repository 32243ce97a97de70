"""Dynamic batching without HTTP: concurrent requests share batches, a failing request fails
alone, a full queue is refused, and ``qaudio serve`` binds loopback unless told otherwise."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from qaudio.audio import Audio
from qaudio.infer import Result
from qaudio.serve import ApiError, DynamicBatcher
from qaudio.specs import get_task

QUERY = get_task("asr").request()


class StubModel:
    """Answers each clip with its source name; raises on the whole batch if one is 'poison'."""

    def __init__(self, delay: float = 0.02):
        self.delay, self.batches = delay, []

    def run(self, audios, queries):
        self.batches.append([a.source for a in audios])
        if any(a.source == "poison" for a in audios):
            raise RuntimeError("boom")
        time.sleep(self.delay)  # the model is busy: requests arriving now wait for the next batch
        return [Result(text=a.source, task=q.name) for a, q in zip(audios, queries, strict=True)]


def _audio(name: str) -> Audio:
    return Audio(np.ones(1600, dtype=np.float32), name)


async def _submit_all(batcher, names, spacing=0.0):
    await batcher.start()
    try:

        async def one(i, name):
            await asyncio.sleep(i * spacing)
            return await batcher.submit(_audio(name), QUERY)

        return await asyncio.gather(*(one(i, n) for i, n in enumerate(names)), return_exceptions=True)
    finally:
        await batcher.stop()


def test_concurrent_requests_are_batched_and_answered_in_place():
    model = StubModel()
    batcher = DynamicBatcher(model, max_batch=8, window_s=0.05)
    names = [f"r{i}" for i in range(20)]
    results = asyncio.run(_submit_all(batcher, names))
    assert [r.text for r in results] == names  # each caller gets its own answer
    assert max(len(b) for b in model.batches) == 8 and len(model.batches) == 3  # 8 + 8 + 4
    assert batcher.items == 20 and batcher.largest_batch == 8


def test_a_request_arriving_alone_waits_at_most_the_window():
    model = StubModel(delay=0.0)
    batcher = DynamicBatcher(model, max_batch=8, window_s=0.01)
    t0 = time.perf_counter()
    (result,) = asyncio.run(_submit_all(batcher, ["solo"]))
    assert result.text == "solo" and time.perf_counter() - t0 < 1.0


def test_a_failing_request_fails_alone():
    model = StubModel()
    batcher = DynamicBatcher(model, max_batch=8, window_s=0.05)
    results = asyncio.run(_submit_all(batcher, ["a", "poison", "b", "c"]))
    assert [r.text for r in results if r.ok] == ["a", "b", "c"]
    assert results[1].error == "internal error while running the model"
    assert model.batches[0] == ["a", "poison", "b", "c"]  # tried together, then one by one


def test_a_full_queue_is_refused_with_503():
    model = StubModel(delay=0.2)
    batcher = DynamicBatcher(model, max_batch=1, window_s=0.0, max_queue=2)
    results = asyncio.run(_submit_all(batcher, [f"r{i}" for i in range(6)]))
    refused = [r for r in results if isinstance(r, ApiError)]
    assert refused and all(e.status == 503 and "server busy" in e.message for e in refused)
    assert any(isinstance(r, Result) and r.ok for r in results)


def test_serve_command_binds_loopback_and_warns_when_exposed(monkeypatch, capsys):
    import argparse

    import uvicorn

    from qaudio import serve

    calls = {}
    monkeypatch.setattr(
        serve, "load", lambda model, device=None, dtype=None, max_new_tokens=None, quantize=None: StubModel()
    )
    monkeypatch.setattr(serve, "create_app", lambda model, config: ("app", config))
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: calls.update(app=app, host=host, port=port))
    monkeypatch.delenv("QAUDIO_API_KEY", raising=False)
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    assert serve.main(parser.parse_args(["some/model"])) == 0
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8000 and calls["app"][1].api_key is None
    assert "warning" not in capsys.readouterr().err
    monkeypatch.setenv("QAUDIO_API_KEY", "k")
    serve.main(parser.parse_args(["some/model", "--host", "0.0.0.0", "--port", "9000"]))
    assert calls["host"] == "0.0.0.0" and calls["app"][1].api_key == "k"
    assert "warning" not in capsys.readouterr().err
    monkeypatch.delenv("QAUDIO_API_KEY")
    serve.main(parser.parse_args(["some/model", "--host", "0.0.0.0"]))
    assert "without --api-key" in capsys.readouterr().err
    with pytest.raises(ValueError, match="max_batch"):
        serve.main(parser.parse_args(["some/model", "--max-batch", "0"]))
