"""The OpenAI response formats: SubRip, WebVTT and verbose_json, from a Result."""

from __future__ import annotations

import pytest

from qaudio.chunking import Segment
from qaudio.infer import Result, Word
from qaudio.serve import ServeConfig, compression_ratio, subtitle_cues, to_srt, to_verbose_json, to_vtt


def _result(words=None, segments=None):
    return Result(
        text="hello world again",
        task="srwt",
        language="en",
        words=words,
        segments=segments or [Segment(0.0, 3.5, "hello world again")],
        timing={"audio_seconds": 3.5},
    )


def test_srt_and_vtt_from_windows():
    r = _result(segments=[Segment(0.0, 29.95, "first part"), Segment(29.95, 3661.5, "second part")])
    cues = subtitle_cues(r, "en")
    assert to_srt(cues) == (
        "1\n00:00:00,000 --> 00:00:29,950\nfirst part\n\n2\n00:00:29,950 --> 01:01:01,500\nsecond part\n\n"
    )
    assert to_vtt(cues) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:29.950\nfirst part\n\n00:00:29.950 --> 01:01:01.500\nsecond part\n\n"
    )


def test_cues_from_words_are_short():
    words = [Word(f"w{i}", i * 1.0, i * 1.0 + 0.5) for i in range(12)]
    cues = subtitle_cues(_result(words=words), "en")
    assert [c.text for c in cues] == ["w0 w1 w2 w3 w4", "w5 w6 w7 w8 w9", "w10 w11"]
    assert all(c.end - c.start <= 5.0 for c in cues)
    assert (cues[0].start, cues[0].end) == (0.0, 4.5)
    long_words = [Word("abcdefghij", i * 0.1, i * 0.1 + 0.1) for i in range(8)]
    assert all(len(c.text) <= 42 for c in subtitle_cues(_result(words=long_words), "en"))


def test_verbose_json_has_the_openai_fields():
    class Tok:
        def encode(self, text, add_special_tokens=False):
            return [len(w) for w in text.split()]

    r = _result(words=[Word("hello", 0.0, 0.5), Word("world", 0.6, 1.0), Word("again", 1.2, 1.5)])
    body = to_verbose_json(r, "transcribe", 0.0, {"word", "segment"}, Tok())
    assert body["task"] == "transcribe" and body["language"] == "english" and body["duration"] == 3.5
    assert body["words"][1] == {"word": "world", "start": 0.6, "end": 1.0}
    seg = body["segments"][0]
    assert {
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    } <= set(seg)
    assert seg["tokens"] == [5, 5, 5] and seg["avg_logprob"] is None
    assert "words" not in to_verbose_json(r, "transcribe", 0.0, {"segment"}, Tok())


def test_compression_ratio_flags_repetition():
    assert compression_ratio("the cat sat on the mat") < 1.2
    assert compression_ratio("la " * 200) > 10
    assert compression_ratio("") == 0.0


def test_serve_config_is_validated():
    assert ServeConfig().host == "127.0.0.1"  # loopback by default
    with pytest.raises(ValueError, match="max_batch"):
        ServeConfig(max_batch=0)
    with pytest.raises(ValueError, match="max_upload_mb"):
        ServeConfig(max_upload_mb=float("nan"))
