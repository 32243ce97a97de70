"""The tag grammar: exact prompts, validation, parsing, tokenizer registration."""

import re
import subprocess
import sys

import pytest

from qaudio import tags
from qaudio.prompt import prompt_for

# The seven prompts of the foundation issue, character for character.
EXPECTED = {
    ("asr", "en", "en", None): "<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>",
    ("s2tt", "en", "de", None): "<|startoftranscript|><|en|><|translate|><|de|><|notimestamps|><|itn|>",
    ("aac", "unknown", "en", None): "<|startofanalysis|><|unknown|><|caption|><|en|><|notimestamps|><|caption_clotho|>",
    ("ser", "en", "en", None): "<|startofanalysis|><|en|><|keyword|><|en|><|notimestamps|><|emotion_recognition|>",
    ("asc", "unknown", "en", None): "<|startofanalysis|><|unknown|><|keyword|><|en|><|notimestamps|><|scene|>",
    ("vsc", "en", "en", None): "<|startofanalysis|><|en|><|keyword|><|en|><|notimestamps|><|vocal_classification|>",
    ("aqa", "en", "en", "How many beeps?"): "<|startofanalysis|><|en|><|question|>How many beeps?<|answer|>",
}


@pytest.mark.parametrize("request_, expected", EXPECTED.items())
def test_prompts_are_exact(request_, expected):
    task, audio_lang, text_lang, question = request_
    assert prompt_for(task, audio_lang, text_lang, question=question) == expected


def test_cli_prints_the_prompt_without_importing_torch():
    code = (
        "import sys; from qaudio.cli import main; "
        "main(['prompt', '--task', 's2tt', '--audio-lang', 'en', '--text-lang', 'de']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == EXPECTED[("s2tt", "en", "de", None)]
    assert out[1] == "False"


def test_timestamps_flag_and_non_speech_language():
    assert prompt_for("asr", timestamps=True).endswith("<|timestamps|><|wo_itn|>")
    # non-speech tasks always use <|unknown|>, whatever the request says
    assert prompt_for("aac", "en").startswith("<|startofanalysis|><|unknown|>")
    assert prompt_for("aac", "unknown", instruction="caption_audiocaps").endswith("<|caption_audiocaps|>")


ASR_PATH = tags.TagPath("transcript", "transcribe", "wo_itn")


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda: tags.build_prompt(ASR_PATH, "xx"), "audio language 'xx'; valid choices: en, zh"),
        (lambda: tags.build_prompt(ASR_PATH, "en", "klingon"), "text language 'klingon'"),
        (lambda: tags.TagPath("transcript", "transcribe", "nope"), "output instruction 'nope'"),
        (lambda: tags.TagPath("transcript", "dance", "itn"), "task tag 'dance'; valid choices: transcribe"),
        (lambda: tags.TagPath("middle", "transcribe", "itn"), "transcription tag 'middle'"),
        (lambda: prompt_for("asr", instruction="nope"), "output instruction 'nope'"),
        (lambda: prompt_for("asr", text_lang="klingon"), "'klingon'; expected one of en, zh"),
    ],
)
def test_unknown_tags_raise_with_choices(build, fragment):
    with pytest.raises(ValueError, match=fragment):
        build()


def test_unknown_task_lists_choices():
    with pytest.raises(ValueError, match="valid choices: asr, s2tt, srwt"):
        prompt_for("dance")


def test_question_rules():
    with pytest.raises(ValueError, match="non-empty question"):
        prompt_for("aqa", question="  ")
    with pytest.raises(ValueError, match="takes none"):
        prompt_for("asr", question="why?")


def test_natural_style():
    assert prompt_for("asr", style="natural") == "Detect the language and recognize the speech:"
    assert prompt_for("s2tt", "en", "de", style="natural") == "Translate the speech into German:"
    assert prompt_for("aqa", question="Is it loud?", style="natural") == "Is it loud?"


def test_vocabulary_counts_and_time_tokens():
    special = tags.all_special_tokens()
    assert len(special) == len(set(special))
    times = [t for t in special if t.startswith("<|") and t[2:-2].replace(".", "").isdigit()]
    assert len(times) == 3001 and times[0] == "<|0.00|>" and times[-1] == "<|30.00|>"
    assert tags.time_token(0.324) == "<|0.32|>"
    assert tags.time_token(0.326) == "<|0.33|>"
    assert tags.time_token(99) == "<|30.00|>" and tags.time_token(-1) == "<|0.00|>"


def test_timestamp_round_trip_and_malformed_output():
    words = [("hello", 0.0, 0.32), ("world", 0.35, 0.8)]
    text = tags.format_timestamped(words)
    assert text == "<|0.00|> hello<|0.32|><|0.35|> world<|0.80|>"
    parsed = tags.parse_timestamped(text + "<|endoftext|>")
    assert parsed.ok and parsed.words == words and parsed.text == "hello world"

    missing_end = tags.parse_timestamped("<|0.00|>hello<|0.32|><|0.35|>world")
    assert not missing_end.ok and "no end time" in missing_end.problems[0]
    backwards = tags.parse_timestamped("<|1.00|>hello<|0.50|>")
    assert any("before it starts" in p for p in backwards.problems)
    overlap = tags.parse_timestamped("<|0.00|>a<|0.50|><|0.20|>b<|0.60|>")
    assert any("before the previous word ends" in p for p in overlap.problems)


def test_a_timestamped_transcript_spells_its_words_with_the_plain_transcripts_tokens():
    # A byte-level BPE gives " bottle" and "bottle" different ids: unspaced timestamped words
    # would share nothing with the ASR targets the same model learns from.
    from qaudio.model.llm import train_bpe_tokenizer

    sentences = ["where is the white bottle", "the baker cleans the brown plate"] * 50
    tokenizer = train_bpe_tokenizer(sentences, vocab_size=300)
    plain = tokenizer.tokenize(sentences[1])
    timed = tokenizer.tokenize(
        tags.format_timestamped([(w, i / 4, (i + 1) / 4) for i, w in enumerate(sentences[1].split())])
    )
    words_of_timed = [t for t in timed if not re.fullmatch(r"<\|\d+\.\d\d\|>", t)]
    assert words_of_timed[1:] == plain[1:]  # the first word of a plain transcript has no space before it


def test_strip_tags_and_labels():
    assert tags.strip_tags("<|startoftranscript|> hello  <|en|>world<|endoftext|>") == "hello world"
    assert tags.parse_label(" Happy.<|endoftext|>", ("happy", "sad")) == ("happy", [])
    label, problems = tags.parse_label("bored", ("happy", "sad"))
    assert label == "bored" and "not one of happy, sad" in problems[0]


def test_add_tag_tokens_is_idempotent(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base = Tokenizer(models.WordLevel({"hello": 0, "[UNK]": 1}, unk_token="[UNK]"))
    base.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=base, unk_token="[UNK]")
    added = tags.add_tag_tokens(tok)
    assert added == len(tags.all_special_tokens())
    assert tags.add_tag_tokens(tok) == 0
    ids = tok("<|startoftranscript|><|0.32|>hello", add_special_tokens=False)["input_ids"]
    assert len(ids) == 3  # each tag is one token, never split
