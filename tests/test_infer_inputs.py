"""Inputs of every kind reach 16 kHz mono; bad ones are reported by name, and a batch goes on."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
from test_infer_chunking import BurstLM

from qaudio.audio import AudioError
from qaudio.infer import Pipeline, Request, Result
from qaudio.specs import get_task

SR = 16_000


def _tone(seconds=1.0, sr=SR, start=0.2, length=0.5):
    x = np.zeros(int(seconds * sr), dtype=np.float32)
    t = np.arange(int(length * sr)) / sr
    x[int(start * sr) : int(start * sr) + len(t)] = 0.5 * np.sin(2 * np.pi * 440 * t)
    return x


def _wav_bytes(x, sr=SR, fmt="WAV", subtype=None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture
def model():
    return Pipeline(BurstLM())


def test_every_input_kind_gives_the_same_answer(model, tmp_path):
    x = _tone()
    stereo_44k = np.stack([_tone(sr=44_100), _tone(sr=44_100)], axis=1)  # (T, 2) at 44.1 kHz
    path = tmp_path / "a.flac"
    sf.write(path, stereo_44k, 44_100)
    results = model.transcribe(
        [
            str(path),
            path,
            _wav_bytes(x),
            (x, SR),
            (stereo_44k, 44_100),
            _wav_bytes(stereo_44k, 44_100, "OGG", "VORBIS"),
            _wav_bytes(_tone(sr=22_050), 22_050, "MP3"),
        ],
        timestamps=True,
    )
    assert all(r.ok for r in results), [r.error for r in results]
    for r in results:  # the tone spans 0.2-0.7 s whatever the container, rate or channel count
        assert len(r.words) == 1
        assert r.words[0].start == pytest.approx(0.2, abs=0.02) and r.words[0].end == pytest.approx(0.7, abs=0.02)


def test_bad_inputs_in_a_batch_are_reported_and_the_rest_answered(model, tmp_path):
    nan = _tone()
    nan[100] = np.nan
    truncated = _wav_bytes(_tone())[:30]  # a WAV header cut short
    batch = [
        _tone().astype(np.float32),  # an array without its sample rate
        (_tone(), SR),
        b"",
        b"this is not audio at all" * 10,
        truncated,
        (nan, SR),
        (np.zeros(SR, dtype=np.float32), SR),  # silence is answered (no_speech), not refused
        str(tmp_path / "missing.wav"),
        (_tone()[:50], SR),
        {"samples": [1, 2]},
    ]
    results = model.transcribe(batch)
    assert [r.ok for r in results] == [False, True, False, False, False, False, True, False, False, False]
    errors = [r.error for r in results]
    assert "input 0" in errors[0] and "sample rate" in errors[0]
    assert "input 2" in errors[2] and "empty" in errors[2]
    assert "input 3" in errors[3] and "cannot decode" in errors[3]
    assert "input 4" in errors[4] and "cannot decode" in errors[4]
    assert "NaN" in errors[5]
    assert results[6].text == "" and results[6].flags == ["no_speech"] and results[6].no_speech_prob == 1.0
    assert "missing.wav" in errors[7] and "not found" in errors[7]
    assert "at least 160" in errors[8]
    assert "unsupported audio input of type dict" in errors[9]
    assert results[1].text == "w" and results[1].words is None  # no timestamps were asked for


def test_a_single_bad_input_raises_with_its_name(model, tmp_path):
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        model.transcribe(str(tmp_path / "missing.wav"))
    silent = model.caption((np.zeros(SR), SR))  # silence is an answer, not an error
    assert silent.ok and silent.text == "" and silent.flags == ["no_speech"]


def test_results_are_json_serialisable_and_round_trip(model):
    r = model.transcribe((_tone(), SR), timestamps=True)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["words"] == [{"word": "w", "start": pytest.approx(0.2, abs=0.02), "end": pytest.approx(0.7, abs=0.02)}]
    assert d["timing"]["audio_seconds"] == 1.0 and d["task"] == "srwt" and d["language"] == "en"
    assert Result.from_dict(d) == r


def test_queries_come_from_the_task_specs():
    asr = get_task("asr")
    assert asr.request().prompt() == "<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>"
    q = asr.request("de", timestamps=True)
    assert (
        q.task.name == "srwt"
        and q.prompt() == "<|startoftranscript|><|de|><|transcribe|><|de|><|timestamps|><|wo_itn|>"
    )
    assert (
        get_task("s2tt").request("de", "en").prompt()
        == "<|startoftranscript|><|de|><|translate|><|en|><|notimestamps|><|itn|>"
    )
    assert (
        get_task("aac").request(instruction="caption_audiocaps").prompt()
        == "<|startofanalysis|><|unknown|><|caption|><|en|><|notimestamps|><|caption_audiocaps|>"
    )
    assert get_task("aqa").request(question="Is it raining?").prompt().endswith("<|question|>Is it raining?<|answer|>")
    assert get_task("ser").request().prompt("natural") == "Recognize the emotion of the speaker:"
    with pytest.raises(ValueError, match="timestamps are available for transcription"):
        get_task("aac").request(timestamps=True)
    with pytest.raises(ValueError, match="unknown spoken language 'xx'"):
        asr.request("xx")
    with pytest.raises(ValueError, match="unknown task"):
        get_task("nope")
    with pytest.raises(ValueError, match="non-empty question"):
        get_task("aqa").request(question=" ")
    with pytest.raises(ValueError, match="raw prompt"):
        Request.raw("")


def test_raw_prompts_with_timestamps_are_parsed_for_words(model):
    r = model.generate((_tone(), SR), prompt=get_task("asr").request(timestamps=True).prompt())
    assert r.task == "generate" and r.words and r.words[0].word == "w"
    r = model.generate((_tone(), SR), prompt=get_task("asr").request().prompt())
    assert r.words is None and r.text == "w"
