"""`qaudio score`: JSONL in, the same numbers as the metric API out, clear errors naming the line."""

import json

import pytest
import sacrebleu

from qaudio.cli import main
from qaudio.metrics import METRICS
from qaudio.score import read_records
from qaudio.specs import get_task


def _write(path, records):
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records) + "\n",
        encoding="utf-8",
    )
    return str(path)


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_asr_json_equals_the_metric_api_and_mixed_languages_are_scored_apart(tmp_path, capsys):
    en = [
        {"prediction": "hello world", "reference": "Hello world."},
        {"prediction": "the cat sat on a mat", "reference": "The cat sat on the mat", "audio_lang": "en"},
    ]
    zh = [{"prediction": "你好世界", "reference": "你好，世界", "text_lang": "zh"}]
    path = _write(tmp_path / "asr.jsonl", en + [""] + zh)  # a blank line is skipped
    out = _json(capsys, ["score", path, "--task", "asr", "--profile", "qwen2_audio", "--json", "--bootstrap", "50"])
    assert out["task"] == "asr" and set(out["by_language"]) == {"en", "zh"}
    api = METRICS["wer"]([r["prediction"] for r in en], [r["reference"] for r in en], profile="qwen2_audio")
    assert out["by_language"]["en"]["values"] == pytest.approx(api.values)
    assert out["by_language"]["en"]["profile"] == "qwen2_audio"
    assert out["by_language"]["zh"]["primary"] == "cer" and out["by_language"]["zh"]["values"]["cer"] == 0.0
    assert len(out["by_language"]["en"]["ci95"]["wer"]) == 2

    single = _json(capsys, ["score", _write(tmp_path / "en.jsonl", en), "--task", "asr", "--json", "--bootstrap", "0"])
    # The task's default profile, qwen2_audio: punctuation and case normalised away; only "a" for "the".
    assert single["values"]["wer"] == pytest.approx(100 * 1 / 8) and "ci95" not in single
    assert single["profile"] == "qwen2_audio" and single["provenance"]["profile_from"] == "the asr task's default"
    assert "Qwen2-Audio" in single["provenance"]["anchor"] and "transformers" in single["provenance"]["versions"]
    assert single["provenance"]["generation"]["decoding"].startswith("not recorded")
    qwen = _json(
        capsys,
        [
            "score",
            _write(tmp_path / "en.jsonl", en),
            "--task",
            "asr",
            "--json",
            "--bootstrap",
            "0",
            "--profile",
            "qwen_audio",
        ],
    )
    assert qwen["values"]["wer"] == pytest.approx(100 * 2 / 8)  # "world." and "a"


def test_table_output_marks_the_primary_metric_with_an_interval(tmp_path, capsys):
    path = _write(tmp_path / "asr.jsonl", [{"prediction": "a b c", "reference": "a b d"}] * 3)
    assert main(["score", path, "--task", "asr"]) == 0
    out = capsys.readouterr().out
    assert "profile qwen2_audio, the asr task's default" in out and "3 examples" in out
    assert "follows QwenLM/Qwen2-Audio eval_audio/evaluate_asr.py" in out
    assert "WER *" in out and "33.33 %" in out and "[33.33 %, 33.33 %]" in out
    assert "jiwer" in out


def test_s2tt_uses_the_target_language_tokenizer_and_multiple_references(tmp_path, capsys):
    records = [
        {"prediction": "我们去公园。", "reference": ["我们去公园了。", "我们去了公园。"], "text_lang": "zh"},
        {"prediction": "他喜欢读书", "reference": ["他很喜欢读书", "他爱读书"], "text_lang": "zh"},
    ]
    out = _json(capsys, ["score", _write(tmp_path / "st.jsonl", records), "--task", "s2tt", "--json"])
    refs = [[r["reference"][k] for r in records] for k in range(2)]
    assert out["values"]["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu([r["prediction"] for r in records], refs, tokenize="zh").score
    )
    assert "tok:zh" in out["details"]["signature"]


def test_classification_uses_the_task_label_set(tmp_path, capsys):
    records = [{"prediction": "Happy.", "reference": "happy"}, {"prediction": "bored", "reference": "sad"}]
    out = _json(
        capsys, ["score", _write(tmp_path / "ser.jsonl", records), "--task", "ser", "--json", "--profile", "normalized"]
    )
    assert out["values"]["accuracy"] == 50.0 and out["values"]["out_of_set"] == 1
    assert out["details"]["confusion"]["labels"] == list(get_task("ser").labels)
    # The default, Qwen2-Audio's comparison, is exact: "Happy." is not "happy".
    out = _json(capsys, ["score", _write(tmp_path / "ser.jsonl", records), "--task", "ser", "--json"])
    assert out["profile"] == "qwen2_audio" and out["values"]["accuracy"] == 0.0


def test_classification_accepts_a_corpus_own_label_names(tmp_path, capsys):
    meld = [
        {"prediction": "joy", "reference": "joy"},
        {"prediction": "sad", "reference": "sadness"},
        {"prediction": " anger", "reference": "anger"},
        {"prediction": "neutral", "reference": "neutral"},
    ]
    out = _json(capsys, ["score", _write(tmp_path / "meld.jsonl", meld), "--task", "ser", "--json"])
    assert out["values"]["accuracy"] == 75.0  # Qwen2-Audio: exact strings; " anger" is left-stripped
    confusion = out["details"]["confusion"]
    happy = confusion["labels"].index("happy")  # MELD's "joy" counts as the task's "happy"
    assert confusion["matrix"][happy][happy] == 1
    normalized = _json(
        capsys, ["score", _write(tmp_path / "meld.jsonl", meld), "--task", "ser", "--json", "--profile", "normalized"]
    )
    assert normalized["values"]["accuracy"] == 100.0  # "sad" and "sadness" are one label


def test_srwt_accepts_word_lists_and_time_token_text(tmp_path, capsys):
    words = [["hello", 0.0, 0.32], ["world", 0.40, 0.80]]
    records = [
        {"prediction": "<|0.00|>hello<|0.30|><|0.35|>world<|0.80|>", "reference_words": words},
        {"prediction_words": [["hi", 0.1, 0.2]], "reference": "<|0.10|>hi<|0.30|>"},
    ]
    out = _json(
        capsys,
        ["score", _write(tmp_path / "srwt.jsonl", records), "--task", "srwt", "--json", "--profile", "qaudio_words"],
    )
    # Shifts: hello 0 + 20, world 50 + 0, hi 0 + 100 -> 170 ms over 3 words.
    assert out["values"]["aas_ms"] == pytest.approx(170 / 3) and out["values"]["matched_words"] == 3
    # Qwen-Audio's tokens add the gap between hello and world: 20, 20 + 50, 50, 100 -> 240 ms over 4.
    out = _json(capsys, ["score", _write(tmp_path / "srwt.jsonl", records), "--task", "srwt", "--json"])
    assert out["values"]["aas_ms"] == pytest.approx(60.0) and out["values"]["matched_tokens"] == 4


def test_aqa_and_mna_files(tmp_path, capsys):
    aqa = [{"prediction": "Yes", "reference": "yes"}, {"prediction": "two", "reference": "three"}]
    out = _json(
        capsys, ["score", _write(tmp_path / "aqa.jsonl", aqa), "--task", "aqa", "--json", "--profile", "normalized"]
    )
    assert (out["values"]["accuracy"], out["values"]["yes_no_accuracy"]) == (50.0, 100.0)
    out = _json(capsys, ["score", _write(tmp_path / "aqa.jsonl", aqa), "--task", "aqa", "--json"])
    assert out["profile"] == "qwen_audio" and out["values"]["accuracy"] == 0.0  # "Yes" is not "yes"
    mna = [{"prediction": "guitar, pitch 72", "reference": "guitar, pitch 60"}]
    out = _json(
        capsys, ["score", _write(tmp_path / "mna.jsonl", mna), "--task", "mna", "--json", "--profile", "qaudio"]
    )
    assert out["values"]["instrument_accuracy"] == 100.0 and out["values"]["chroma_accuracy"] == 100.0
    assert out["values"]["accuracy"] == 0.0
    out = _json(capsys, ["score", _write(tmp_path / "mna.jsonl", mna), "--task", "mna", "--json"])
    assert out["values"]["chroma_accuracy"] == 0.0  # HEAR's column indices 1 and 0, not pitch classes


@pytest.mark.parametrize(
    "line, task, message",
    [
        ('{"prediction": "a"', "asr", "line 2: not valid JSON"),
        ('["a", "b"]', "asr", "line 2: expected a JSON object"),
        ('{"prediction": "a"}', "asr", "line 2: missing field(s) reference"),
        ('{"prediction": "a", "reference": ["a", "b"]}', "asr", "line 2: field 'reference' must be a string, got"),
        ('{"prediction": 3, "reference": "a"}', "ser", "line 2: field 'prediction' must be a string"),
        ('{"prediction": "a", "reference": []}', "aac", "must be a string or a non-empty list of strings"),
        ('{"prediction": "a"}', "srwt", "line 2: needs 'reference_words'"),
        ('{"prediction": "a", "reference": "a", "text_lang": 5}', "asr", "line 2: text_lang/audio_lang"),
    ],
)
def test_malformed_records_name_the_line(tmp_path, capsys, line, task, message):
    path = _write(tmp_path / "bad.jsonl", ['{"prediction": "ok", "reference": "ok"}', line])
    assert main(["score", path, "--task", task]) == 2
    assert message in capsys.readouterr().err


def test_file_profile_and_empty_errors(tmp_path, capsys):
    assert main(["score", str(tmp_path / "missing.jsonl"), "--task", "asr"]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = _write(tmp_path / "ok.jsonl", [{"prediction": "a", "reference": "a"}])
    assert main(["score", path, "--task", "asr", "--profile", "sacrebleu"]) == 2
    assert "valid profiles: qwen_audio" in capsys.readouterr().err
    (tmp_path / "empty.jsonl").write_text("\n")
    assert main(["score", str(tmp_path / "empty.jsonl"), "--task", "asr"]) == 2
    assert "holds no records" in capsys.readouterr().err


def test_caption_records_keep_every_reference(tmp_path):
    path = _write(tmp_path / "aac.jsonl", [{"prediction": "a dog barks", "reference": ["a dog barks", "dogs bark"]}])
    assert read_records(path, "caption")[0].reference == ["a dog barks", "dogs bark"]


def test_table_says_spider_not_computed_with_the_reason_and_no_number():
    from qaudio.metrics import MetricResult
    from qaudio.score import format_table

    result = MetricResult(
        "caption",
        "aac_metrics",
        "en",
        2,
        {"cider_d": 0.5},
        {"cider_d": "score"},
        primary="cider_d",
        higher_is_better=True,
        not_computed={"spider": "needs SPICE. Fix: run aac-metrics-download"},
    )
    table = format_table(result)
    assert "SPIDEr: not computed (needs SPICE. Fix: run aac-metrics-download)" in table
    assert "CIDEr-D *" in table and "0.5000" in table
    assert not any(line.lstrip().startswith("SPIDEr ") for line in table.splitlines())
