"""Degenerate answers are flagged (each flag on crafted outputs), retried on request, counted in
reports; silent and speech-free clips are answered with empty text and ``no_speech``."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.standin_lm import StandInLM

from qaudio import degeneration
from qaudio.degeneration import count_flags, detect, summary
from qaudio.infer import Pipeline

ASR_PROMPT = "<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>"
AQA_PROMPT = "<|startofanalysis|><|unknown|><|question|>what instrument is playing in this recording<|answer|>"
SR = 16_000


def flags(text, raw=None, prompt=ASR_PROMPT, **kw):
    return detect(text, text if raw is None else raw, prompt, **kw)


def test_a_normal_answer_raises_no_flag():
    assert flags("the quick brown fox jumps over the lazy dog") == []
    assert flags("very very good, no no.") == []  # emphasis is not a loop
    assert flags("mississippi... hahaha!") == []
    assert flags("a long sentence " + "with different words each time to make it longer than eighty characters") == []


@pytest.mark.parametrize(
    "text",
    [
        "the cat sat " * 5,  # a 3-gram, 5 times in a row
        "yes " * 6,  # one word
        "cr" * 40,  # the demo's loop of "cr", without any space
        "hello world and then " + "we went home and " * 4,
    ],
)
def test_loops_are_flagged(text):
    assert "repetition" in flags(text)


def test_a_loop_of_tags_around_a_short_text_is_a_loop():
    assert "repetition" in flags("TT", raw="<|13.66|>" * 6 + "<|7.78|>TT")
    assert flags("hi there", raw="<|0.00|>hi<|0.20|><|0.25|>there<|0.60|>") == []


def test_echo_of_tags_or_question_is_flagged():
    assert flags("hello", raw="<|en|><|transcribe|>hello") == ["echo"]
    assert "echo" in flags("what instrument is playing in this recording", prompt=AQA_PROMPT)
    assert flags("a violin", prompt=AQA_PROMPT) == []
    # time tokens are a timestamped answer, not an echo of the prompt
    assert flags("hi", raw="<|0.00|>hi<|0.40|>", prompt=ASR_PROMPT.replace("<|notimestamps|>", "<|timestamps|>")) == []


def test_empty_truncated_and_non_text():
    assert flags("") == ["empty"]
    assert flags("   ", raw="") == ["empty"]
    assert flags("a sentence that ran on", generated_tokens=256, max_new_tokens=256) == ["truncated"]
    assert flags("a sentence that ended", generated_tokens=12, max_new_tokens=256) == []
    assert flags("!!!!") == ["non_text"]
    assert flags("so ?!?! then") == ["non_text"]
    assert flags("broken \ufffd bytes") == ["non_text"]
    assert flags("wait... what?") == []


def test_flags_are_counted_for_reports():
    preds = [
        {"id": "a", "flags": ["repetition", "truncated"]},
        {"id": "b", "flags": []},
        {"id": "c", "flags": ["repetition"]},
        {"id": "d"},
    ]
    counts = count_flags(preds)
    assert counts == {"repetition": 2, "truncated": 1}
    assert summary(counts) == "repetition 2, truncated 1" and summary(count_flags([])) == "none"
    assert [x[:2] for x in degeneration.examples(preds)] == [
        ("repetition", "a"),
        ("repetition", "c"),
        ("truncated", "a"),
    ]


class LoopLM(StandInLM):
    """Stands in for AudioLM: loops unless decoding penalises repetition."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def generate(self, batch, max_new_tokens=128, **kwargs):
        self.calls.append(kwargs)
        text = "a clean answer" if kwargs.get("repetition_penalty") else "la " * 20
        return [text] * len(batch["audios"])


def _tone(seconds=1.0):
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_results_carry_flags_and_retry_fixes_and_marks_them():
    lm = LoopLM()
    kept = Pipeline(lm).caption((_tone(), SR))
    assert kept.flags == ["repetition"] and kept.raw.startswith("la la")
    retried = Pipeline(lm, on_degenerate="retry").caption((_tone(), SR))
    assert retried.text == "a clean answer" and retried.flags == ["retried"]
    assert lm.calls[-1]["repetition_penalty"] == degeneration.RETRY_GENERATE_KWARGS["repetition_penalty"]
    with pytest.raises(ValueError, match="on_degenerate"):
        Pipeline(lm, on_degenerate="ignore")


@pytest.mark.vad
def test_speech_free_clip_is_answered_empty_with_no_speech():
    from qaudio import vad
    from qaudio.synth.espeak import synthesize

    if not vad.available():
        pytest.skip(f"silero-vad is not installed: {vad.INSTALL_HINT}")
    lm = LoopLM()
    model = Pipeline(lm)
    noise = (0.1 * np.random.default_rng(0).standard_normal(5 * SR)).astype(np.float32)
    speech = synthesize("the quick brown fox jumps over the lazy dog", voice="en").samples
    r_noise, r_speech, r_silence = model.transcribe([(noise, SR), (speech, SR), (np.zeros(5 * SR, np.float32), SR)])
    assert r_noise.ok and r_noise.text == "" and r_noise.flags == ["no_speech"] and r_noise.no_speech_prob > 0.5
    assert r_silence.flags == ["no_speech"] and r_silence.no_speech_prob == 1.0
    assert r_speech.no_speech_prob < 0.5 and "no_speech" not in r_speech.flags and r_speech.raw
    assert len(lm.calls) == 1  # only the speech reached the model
    # Tasks about sounds answer non-speech audio: a caption of noise is generated, not refused.
    assert Pipeline(lm).caption((noise, SR)).raw
