"""``qaudio.pipeline``: transformers-ASR-pipeline calls answered exactly as ``qaudio.load(...).transcribe``."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from test_infer_model import MAX_NEW_TOKENS, _clip, tiny_model_dir

import qaudio
from qaudio.chunking import split_windows

SR = 16_000


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    m = qaudio.load(tiny_model_dir(tmp_path_factory.mktemp("tiny")), device="cpu")
    m.max_new_tokens = MAX_NEW_TOKENS
    return m


@pytest.fixture(scope="module")
def pipe(model):
    return qaudio.pipeline(model)


def test_inputs_in_every_form_answer_as_transcribe(pipe, model, tmp_path):
    x = _clip(2.0, 5)
    path = tmp_path / "a.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    expected = model.transcribe((x, SR)).text
    assert pipe(str(path)) == {"text": expected}
    assert pipe(path.read_bytes())["text"] == expected
    assert pipe(x)["text"] == expected  # a bare array is at 16 kHz, as transformers assumes
    assert pipe({"raw": x, "sampling_rate": SR})["text"] == expected
    y = _clip(1.0, 6)
    assert pipe({"array": y[::2], "sampling_rate": 8000})["text"] == model.transcribe((y[::2], 8000)).text
    assert [r["text"] for r in pipe([x, y], batch_size=2)] == [expected, model.transcribe((y, SR)).text]


def test_word_timestamps_are_the_words_of_transcribe(pipe, model):
    x = _clip(3.0, 7)
    out = pipe(x, return_timestamps="word", generate_kwargs={"language": "english"})
    r = model.transcribe((x, SR), lang="en", timestamps=True)
    assert out["text"] == r.text
    assert out["chunks"] == [{"text": w.word, "timestamp": (w.start, w.end)} for w in r.words or []]


def test_chunk_length_cuts_long_audio_like_the_model_does(pipe, model):
    x = np.concatenate([_clip(9.0, s) for s in range(4)])  # 36 s
    # Default chunk: the encoder's window, so the answer is transcribe's (which splits the same way).
    assert pipe(x)["text"] == model.transcribe((x, SR)).text
    # chunk_length_s=10: pieces cut at pauses, each answered as transcribe answers it alone.
    windows = split_windows(x, 10.0, search_seconds=5.0)
    assert len(windows) >= 4 and all(w.duration <= 10.0 for w in windows)
    out = pipe(x, chunk_length_s=10, stride_length_s=2, return_timestamps=True)
    pieces = [model.transcribe((x[w.start : w.end], SR)) for w in windows]
    assert out["text"] == " ".join(p.text.strip() for p in pieces if p.text.strip())
    assert [c["timestamp"][0] for c in out["chunks"]] == [round(w.offset, 3) for w, p in zip(windows, pieces) if p.text]


def test_bad_arguments_are_clear(pipe):
    x = _clip(1.0, 1)
    with pytest.raises(ValueError, match="return_timestamps"):
        pipe(x, return_timestamps="char")
    with pytest.raises(ValueError, match="chunk_length_s"):
        pipe(x, chunk_length_s=60)
    with pytest.raises(ValueError, match="unsupported language"):
        pipe(x, generate_kwargs={"language": "klingon"})
    with pytest.raises(ValueError, match="sampling_rate"):
        pipe({"raw": x})
