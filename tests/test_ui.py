"""``qaudio ui``: the Gradio page driven through ``gradio_client`` on loopback, with a login.

Answers must equal the model called directly; bad audio and over-long audio are refused with
a clear message while the page keeps answering.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from test_infer_model import MAX_NEW_TOKENS, _clip, tiny_model_dir  # noqa: E402

import qaudio  # noqa: E402
from qaudio.ui import USER, launch  # noqa: E402

SR = 16_000
KEY = "ui-key"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    model = qaudio.load(tiny_model_dir(tmp_path_factory.mktemp("tiny")), device="cpu")
    model.max_new_tokens = MAX_NEW_TOKENS
    app = launch(model, host="127.0.0.1", port=None, api_key=KEY, max_duration_s=5.0, max_queue=4, block=False)
    try:
        assert app.local_url.startswith("http://127.0.0.1:")
        yield app.local_url, model
    finally:
        app.close()


@pytest.fixture(scope="module")
def client(page):
    url, _ = page
    return gradio_client.Client(url, auth=(USER, KEY), verbose=False)


def _wav(tmp_path, x, name="a.wav"):
    path = tmp_path / name
    sf.write(path, x, SR, subtype="PCM_16")
    return str(path)


def test_transcribe_with_word_times_equals_the_model(client, page, tmp_path):
    _, model = page
    path = _wav(tmp_path, _clip(2.0, 3))
    text, words, plot, timing = client.predict(
        gradio_client.handle_file(path), "transcribe", "en", "", True, api_name="/answer"
    )
    expected = model.transcribe(path, timestamps=True)
    assert text == expected.text
    assert [tuple(r) for r in words["data"]] == [(w.word, w.start, w.end) for w in expected.words or []] or (
        not expected.words and words["data"] in ([], [["", "", ""]])
    )
    assert timing["audio_seconds"] == pytest.approx(2.0) and plot is not None


def test_other_tasks_through_the_page(client, page, tmp_path):
    _, model = page
    path = _wav(tmp_path, _clip(1.5, 4))
    label = client.predict(gradio_client.handle_file(path), "emotion", "en", "", False, api_name="/answer")[0]
    assert label == model.classify(path, task="emotion").text
    answer = client.predict(
        gradio_client.handle_file(path), "ask a question", "en", "What is it?", False, api_name="/answer"
    )[0]
    assert answer == model.ask(path, question="What is it?").text


def test_bad_audio_and_limits_are_clear_errors_and_the_page_keeps_working(client, page, tmp_path):
    _, model = page
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not audio at all")
    long = _wav(tmp_path, _clip(6.0, 1), "long.wav")
    silent = _wav(tmp_path, np.zeros(SR, dtype=np.float32), "silent.wav")
    for path, message in ((str(bad), "cannot decode"), (long, "at most 5 s"), (silent, "silent")):
        with pytest.raises(gradio_client.exceptions.AppError, match=message):
            client.predict(gradio_client.handle_file(path), "transcribe", "en", "", False, api_name="/answer")
    with pytest.raises(gradio_client.exceptions.AppError) as error:
        client.predict(gradio_client.handle_file(str(bad)), "transcribe", "en", "", False, api_name="/answer")
    assert "bad.wav" in str(error.value) and "/tmp" not in str(error.value)  # the server's paths stay private
    good = _wav(tmp_path, _clip(1.0, 2), "good.wav")
    assert (
        client.predict(gradio_client.handle_file(good), "transcribe", "en", "", False, api_name="/answer")[0]
        == model.transcribe(good).text
    )


def test_the_page_needs_the_login(page):
    url, _ = page
    with pytest.raises(Exception):
        gradio_client.Client(url, auth=(USER, "wrong"), verbose=False)


def test_uploads_over_the_size_limit_are_refused(page, tmp_path):
    _, model = page
    app = launch(model, host="127.0.0.1", port=None, max_upload_mb=0.01, block=False)  # 10 kB
    try:
        client = gradio_client.Client(app.local_url, verbose=False)
        big = _wav(tmp_path, _clip(1.0, 8), "big.wav")  # 32 kB
        with pytest.raises(Exception, match="(?i)size|large|exceed"):
            client.predict(gradio_client.handle_file(big), "transcribe", "en", "", False, api_name="/answer")
        small = _wav(tmp_path, _clip(0.2, 9), "small.wav")  # 6.4 kB
        assert (
            client.predict(gradio_client.handle_file(small), "transcribe", "en", "", False, api_name="/answer")[0]
            == model.transcribe(small).text
        )
    finally:
        app.close()
