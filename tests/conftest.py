"""Test-session settings: one private cache folder, so converted Whisper weights and caption
jars are made once per session and the user's ~/.cache/qaudio is never touched by tests; and
the fixtures several test files share (stand-in models, the tiny synthetic corpus)."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_qaudio_cache(tmp_path_factory):
    if "QAUDIO_CACHE" in os.environ:  # an explicit choice (e.g. CI reusing a warm cache) wins
        yield
        return
    os.environ["QAUDIO_CACHE"] = str(tmp_path_factory.mktemp("qaudio-cache"))
    yield
    del os.environ["QAUDIO_CACHE"]


@pytest.fixture(scope="session")
def standins(tmp_path_factory):
    """{name: directory} of tiny local stand-ins of the hub models (see tests/fixtures/standins.py)."""
    from tests.fixtures.standins import build_standins

    return build_standins(tmp_path_factory.mktemp("standins"))


@pytest.fixture(scope="session", autouse=True)
def _no_voice_activity_detection():
    """Tests feed noise and tones where a model expects speech; the voice activity detector
    would rightly answer those with no_speech. It runs only in tests marked ``vad``."""
    import qaudio.vad

    patch = pytest.MonkeyPatch()
    patch.setattr(qaudio.vad, "available", lambda: False)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _voice_activity_detection_when_marked(request, monkeypatch):
    if "vad" in request.keywords:
        import importlib.util

        import qaudio.vad

        monkeypatch.setattr(qaudio.vad, "available", lambda: importlib.util.find_spec("silero_vad") is not None)
    yield


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The tiny synthetic corpus (every task, en/de/fr), made once per session for the training tests."""
    from qaudio.synth import espeak
    from qaudio.synth.corpus import generate

    if not espeak.available():
        pytest.skip("eSpeak NG (espeakng-loader) is not installed")
    root = tmp_path_factory.mktemp("synthetic") / "tiny"
    generate(root, size="tiny", seed=0, workers=1, progress=False)
    return root
