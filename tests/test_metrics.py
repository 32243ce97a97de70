"""Metric families against hand-computed values, the anchors' scripts and the libraries called directly."""

import importlib.metadata
import json
import math
import re
import sys

import jiwer
import numpy as np
import pytest
import sacrebleu

from qaudio.metrics import METRICS, MetricResult, bootstrap_ci, get_metric
from qaudio.metrics import bleu as bleu_metric
from qaudio.metrics import wer as wer_metric
from qaudio.metrics.bootstrap import ratio
from qaudio.metrics.note import parse_note
from qaudio.metrics.timestamps import timed_words
from qaudio.specs import registry
from qaudio.tags import format_timestamped

TASKS = registry("tasks")  # loads the spec folder as qaudio._builtin.tasks (checkout or wheel)
from qaudio._builtin.tasks.mna import note_target  # noqa: E402

# ---- the registry ------------------------------------------------------------------------


def test_every_task_metric_is_registered_with_a_default_profile():
    for task in TASKS.values():
        family = get_metric(task.metric)
        assert family.default_profile in family.profiles
    assert set(METRICS) == {"wer", "bleu", "caption", "aqa", "accuracy", "timestamps", "note"}


def test_unknown_family_profile_and_length_mismatch_are_clear_errors():
    with pytest.raises(ValueError, match="valid families: wer"):
        get_metric("rouge")
    with pytest.raises(ValueError, match=r"valid profiles: qwen_audio .*qwen2_audio .*whisper"):
        METRICS["wer"](["a"], ["a"], profile="kaldi")
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        METRICS["wer"](["a", "b"], ["a"])
    with pytest.raises(ValueError, match="nothing to score"):
        METRICS["accuracy"]([], [])
    with pytest.raises(ValueError, match=r"wer takes no option.* labels; its options: none"):
        METRICS["wer"](["a"], ["a"], labels=("a",))


# ---- bootstrap ---------------------------------------------------------------------------


def test_bootstrap_recomputes_the_corpus_ratio_not_a_mean_of_ratios():
    # Two examples: 1 edit in 10 words and 1 edit in 1 word. A resample is both-first (2/20 =
    # 10%), both-second (2/2 = 100%) or mixed (2/11), each pair 1/4 of the time, so the 2.5th
    # and 97.5th percentiles are exactly 10 and 100. A mean of per-example ratios would give
    # 55% for the mixed resamples instead of 18.2%.
    stats = np.array([[1, 10], [1, 1]])
    low, high = bootstrap_ci(stats, ratio(0, 1, 100.0), n=4000, seed=0)
    assert (low, high) == (10.0, 100.0)
    middle = bootstrap_ci(stats, ratio(0, 1, 100.0), n=4000, seed=0, level=0.4)
    assert middle == pytest.approx((200 / 11, 200 / 11))


def test_bootstrap_is_deterministic_per_seed_and_checks_its_input():
    rng = np.random.default_rng(1)
    stats = np.stack([rng.integers(0, 5, 200), rng.integers(5, 20, 200)], axis=1)
    agg = ratio(0, 1, 100.0)
    a, b = bootstrap_ci(stats, agg, n=300, seed=7), bootstrap_ci(stats, agg, n=300, seed=7)
    assert a == b and a[0] < agg(stats) < a[1]
    assert bootstrap_ci(stats, agg, n=300, seed=8) != a
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci(np.zeros((0, 2)), agg)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci(stats, agg, n=0)


# ---- WER / CER ---------------------------------------------------------------------------


def _levenshtein(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _qwen_audio_compute_wer(refs, hyps, language):
    """Qwen-Audio eval_audio/evaluate_asr.py, remove_sp + compute_wer, transcribed by hand."""

    def remove_sp(text):
        gt = re.sub(r"<\|.*?\|>", " ", text)
        gt = re.sub(r"\s+", r" ", gt)
        gt = re.sub(" ?([!,.?;:])", r"\1", gt)
        gt = gt.lstrip(" ")
        if language == "zh":
            gt = re.sub(r"\s+", r"", gt)
        return gt

    distance = ref_length = 0
    for ref, pred in zip(refs, hyps, strict=True):
        ref_items, pred_items = remove_sp(ref).lower().split(), remove_sp(pred).lower().split()
        if language == "zh":
            ref_items, pred_items = list("".join(ref_items)), list("".join(pred_items))
        distance += _levenshtein(ref_items, pred_items)
        ref_length += len(ref_items)
    return distance / ref_length


EN_REFS = ["Hello, world.", "The cat sat on the mat", "<|en|>it is 2 PM now", "mister smith's colours"]
EN_HYPS = ["hello , world", "the cat sat on a mat today", "It is two p.m. now<|endoftext|>", "Mr. Smith's colors"]


def test_qwen_audio_profile_matches_the_anchor_script_and_a_hand_count():
    r = METRICS["wer"](EN_HYPS, EN_REFS, profile="qwen_audio")
    assert r.values["wer"] == pytest.approx(100 * _qwen_audio_compute_wer(EN_REFS, EN_HYPS, "en"))
    # By hand: "world." vs "world" (1 sub); "a" for "the" and "today" inserted (1 sub, 1 ins);
    # "2"/"two", "pm"/"p.m." (2 subs); "mister"/"mr." and "colours"/"colors" (2 subs).
    # 6 substitutions + 1 insertion over 2 + 6 + 5 + 3 = 16 reference words.
    assert (r.values["substitutions"], r.values["deletions"], r.values["insertions"]) == (6, 0, 1)
    assert r.values["reference_words"] == 16
    assert r.values["wer"] == pytest.approx(700 / 16)
    stats, aggregate = r.bootstrap["wer"]
    assert aggregate(stats) == pytest.approx(r.values["wer"])  # the bootstrap recomputes the same statistic
    assert r.per_example["edits"] == [1, 2, 2, 2]


def test_chinese_is_scored_per_character_with_punctuation_kept_by_qwen_audio():
    refs, hyps = ["今天天气很好。", "你好 世界"], ["今天天气很好", "你好世界！"]
    r = METRICS["wer"](hyps, refs, profile="qwen_audio", language="zh-CN")
    assert r.primary == "cer" and r.language == "zh"
    assert r.values["cer"] == pytest.approx(100 * _qwen_audio_compute_wer(refs, hyps, "zh"))
    assert r.values["cer"] == pytest.approx(100 * 2 / 11)  # "。" deleted, "！" inserted; 7 + 4 characters
    # Qwen2-Audio's Chinese normalisation drops punctuation: no errors left.
    r2 = METRICS["wer"](hyps, refs, profile="qwen2_audio", language="zh")
    assert r2.values["cer"] == 0.0 and "cn_tn" in r2.provenance["anchor"]


def test_whisper_and_qwen2_audio_profiles_equal_jiwer_on_normalised_text():
    from qaudio.metrics import normalizers

    english, basic = normalizers.whisper_english(), normalizers.whisper_basic()  # OpenAI's, as Qwen2-Audio copies them
    expected = jiwer.wer([english(r) for r in EN_REFS], [english(h) for h in EN_HYPS])
    assert METRICS["wer"](EN_HYPS, EN_REFS, profile="whisper").values["wer"] == pytest.approx(100 * expected)
    # The English normaliser maps 2 PM / two p.m., Mr. / mister and colours / colors together.
    qwen2 = METRICS["wer"](EN_HYPS, EN_REFS, profile="qwen2_audio")
    expected2 = jiwer.wer(
        [basic(english(wer_metric.remove_sp(r, "en"))) for r in EN_REFS],
        [basic(english(wer_metric.remove_sp(h, "en"))) for h in EN_HYPS],
    )
    assert qwen2.values["wer"] == pytest.approx(100 * expected2)
    assert qwen2.values["wer"] < METRICS["wer"](EN_HYPS, EN_REFS, profile="qwen_audio").values["wer"]


def test_empty_references_count_insertions_and_all_empty_is_an_error():
    r = METRICS["wer"](["a b", "x y z"], ["", "x y z"])
    assert r.values["insertions"] == 2 and r.values["wer"] == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="every reference is empty"):
        METRICS["wer"](["a"], [""])
    with pytest.raises(ValueError, match="transcript string"):
        METRICS["wer"]([["a"]], ["a"])


# ---- BLEU --------------------------------------------------------------------------------


def test_bleu_equals_sacrebleu_called_directly_and_is_case_sensitive():
    hyps = ["The cat sat on the mat.", "a dog barks at the moon", "It rains"]
    refs = ["The cat sat on a mat.", "A dog is barking at the moon.", "It is raining"]
    r = METRICS["bleu"](hyps, refs, language="de")
    direct = sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a")
    assert r.values["bleu"] == pytest.approx(direct.score)
    assert "tok:13a" in r.details["signature"] and "case:mixed" in r.details["signature"]
    stats, aggregate = r.bootstrap["bleu"]
    assert stats.shape == (3, 10) and aggregate(stats) == pytest.approx(direct.score)
    lower = METRICS["bleu"]([h.lower() for h in hyps], refs, language="de")
    assert lower.values["bleu"] != pytest.approx(r.values["bleu"])


def test_bleu_hand_computed_brevity_penalty_and_chinese_tokenizer():
    # Every n-gram matches; 6 hypothesis vs 7 reference words: BLEU = 100 * exp(1 - 7/6).
    r = METRICS["bleu"](["the cat sat on the mat"], ["the cat sat on the mat today"])
    assert r.values["bleu"] == pytest.approx(100 * math.exp(1 - 7 / 6))
    hyps, refs = ["我们今天去公园散步。", "他喜欢读书"], ["我们今天去公园散步了。", "他很喜欢读书"]
    refs2 = ["今天我们去公园散步。", "他喜欢看书"]
    zh = METRICS["bleu"](hyps, [[a, b] for a, b in zip(refs, refs2, strict=True)], language="zh")
    assert zh.values["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs, refs2], tokenize="zh").score)
    assert "tok:zh" in zh.details["signature"] and "nrefs:2" in zh.details["signature"]
    with pytest.raises(ValueError, match="same number"):
        METRICS["bleu"](hyps, [[refs[0], refs2[0]], refs[1]], language="zh")


def test_japanese_bleu_uses_ja_mecab_or_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "MeCab", None)  # importing it now raises ImportError
    with pytest.raises(ValueError, match=r"ja-mecab.*pip install 'qaudio\[ja\]'"):
        bleu_metric.tokenizer_for("ja")
    assert bleu_metric.tokenizer_for("zh") == "zh" and bleu_metric.tokenizer_for("fr") == "13a"


# ---- classification and AQA --------------------------------------------------------------


def test_accuracy_confusion_matrix_and_unweighted_accuracy_by_hand_and_by_sklearn():
    from sklearn.metrics import accuracy_score, confusion_matrix

    labels = ("neutral", "happy", "sad")
    refs = ["happy", "happy", "sad", "neutral", "neutral", "neutral"]
    hyps = ["Happy.", "sad", "sad", "neutral", "<|en|>neutral", "bored"]
    r = METRICS["accuracy"](hyps, refs, labels=labels)
    # Correct: 1, 3, 4, 5 -> 4/6. Recalls: neutral 2/3, happy 1/2, sad 1/1 -> mean 13/18.
    assert r.values["accuracy"] == pytest.approx(400 / 6)
    assert r.values["unweighted_accuracy"] == pytest.approx(100 * 13 / 18)
    assert r.values["out_of_set"] == 1
    conf = r.details["confusion"]
    assert conf["columns"] == ["neutral", "happy", "sad", "(other)"]
    assert conf["matrix"] == [[2, 0, 0, 1], [0, 1, 1, 0], [0, 0, 1, 0]]
    normalised = ["happy", "sad", "sad", "neutral", "neutral", "bored"]
    assert r.values["accuracy"] == pytest.approx(100 * accuracy_score(refs, normalised))
    sk = confusion_matrix(refs, normalised, labels=[*labels, "bored"])
    assert np.array_equal(np.asarray(conf["matrix"])[:, :3], sk[:3, :3])
    # The anchor's raw comparison: "Happy." and "<|en|>neutral" no longer match.
    exact = METRICS["accuracy"](hyps, refs, profile="exact", labels=labels)
    assert exact.values["accuracy"] == pytest.approx(100 * accuracy_score(refs, [h.strip() for h in hyps]))
    assert exact.values["accuracy"] == pytest.approx(200 / 6)
    with pytest.raises(ValueError, match="not in the label set"):
        METRICS["accuracy"](["x"], ["angry"], labels=labels)


def test_aqa_accuracy_and_yes_no_accuracy_as_qwen_audio_evaluate_aqa():
    from sklearn.metrics import accuracy_score

    refs = ["yes", "No", "a dog", "three", "yes"]
    hyps = ["Yes", "no.", "a dog", "two", "yes"]
    raw = METRICS["aqa"](hyps, refs, profile="qwen_audio")
    bi = [i for i, r in enumerate(refs) if r.lower() in ("yes", "no")]
    assert raw.values["accuracy"] == pytest.approx(100 * accuracy_score(refs, hyps))
    assert raw.values["yes_no_accuracy"] == pytest.approx(
        100 * accuracy_score([refs[i] for i in bi], [hyps[i] for i in bi])
    )
    assert raw.values["yes_no_questions"] == 3
    norm = METRICS["aqa"](hyps, refs)  # "Yes" and "no." now count
    assert (norm.values["accuracy"], norm.values["yes_no_accuracy"]) == pytest.approx((80.0, 100.0))
    none = METRICS["aqa"](["red"], ["blue"])
    assert "yes_no_accuracy" not in none.values and "yes_no_accuracy" in none.not_computed


# ---- music notes -------------------------------------------------------------------------


def test_note_parsing_round_trips_the_task_target_and_accuracies_by_hand():
    assert parse_note(note_target("synth_lead", 61)) == ("synth_lead", 61)
    assert parse_note("Guitar, pitch 60.") == ("guitar", 60)
    assert parse_note("bass") == ("bass", None) and parse_note("pitch 40") == (None, 40)
    refs = [note_target("guitar", 60), note_target("guitar", 60), note_target("bass", 40), note_target("organ", 50)]
    hyps = ["guitar, pitch 60", "guitar, pitch 72", "bass", "reed, pitch 38"]
    r = METRICS["note"](hyps, refs, profile="qaudio")
    # exact: 1/4; instrument: 3/4; pitch: 1/4; chroma (mod 12): 60, 72 ~ 60, 38 ~ 50 -> 3/4.
    assert [
        r.values[k] for k in ("accuracy", "instrument_accuracy", "pitch_accuracy", "chroma_accuracy")
    ] == pytest.approx([25.0, 75.0, 25.0, 75.0])
    assert r.values["unparsed"] == 1
    with pytest.raises(ValueError, match="not 'instrument, pitch N'"):
        METRICS["note"](["bass, pitch 40"], ["bass"], profile="qaudio")


# ---- word timestamps ---------------------------------------------------------------------


def test_aas_and_boundary_errors_by_hand():
    ref = [("the", 0.00, 0.20), ("cat", 0.25, 0.60), ("sat", 0.70, 1.00)]
    # "big" is inserted; the three reference words all match.
    hyp = [("the", 0.00, 0.25), ("big", 0.25, 0.30), ("cat", 0.30, 0.60), ("sat", 0.80, 1.20)]
    r = METRICS["timestamps"]([format_timestamped(hyp)], [[list(w) for w in ref]], profile="qaudio_words")
    # Shifts: the 0 + 50, cat 50 + 0, sat 100 + 200 -> 400 ms over 3 words.
    assert r.values["aas_ms"] == pytest.approx(400 / 3)
    assert r.values["matched_words"] == 3
    assert r.values["median_boundary_error_ms"] == pytest.approx(50.0)  # of 0, 0, 50, 50, 100, 200
    assert r.values["within_50ms"] == pytest.approx(400 / 6)
    assert r.values["within_100ms"] == pytest.approx(500 / 6)
    assert r.values["wer"] == pytest.approx(100 / 3)  # one insertion over three words
    stats, aggregate = r.bootstrap["aas_ms"]
    assert aggregate(stats) == pytest.approx(r.values["aas_ms"])


def test_timestamp_inputs_errors_and_no_match():
    words, problems = timed_words("<|0.00|>hi<|0.30|>there")
    assert words[0] == ("hi", 0.0, 0.3) and problems  # "there" has no end time
    r = METRICS["timestamps"](
        ["<|0.00|>hi<|0.30|>there"], [[["hi", 0.0, 0.3], ["there", 0.3, 0.6]]], profile="qaudio_words"
    )
    assert r.values["malformed_predictions"] == 1
    with pytest.raises(ValueError, match="example 0: malformed reference"):
        METRICS["timestamps"]([[]], ["<|0.50|>late<|0.20|>"], profile="qaudio_words")
    with pytest.raises(ValueError, match=r"word 0 must be \[word, start_s, end_s\]"):
        METRICS["timestamps"]([[["hi", 0.0]]], [[["hi", 0.0, 0.3]]], profile="qaudio_words")
    none = METRICS["timestamps"]([[["no", 0.0, 0.1]]], [[["yes", 0.0, 0.1]]], profile="qaudio_words")
    assert "aas_ms" in none.not_computed and math.isnan(none.score)
    # The anchor's tokens: a prediction without time tokens is left out of AAS and counted.
    r = METRICS["timestamps"](["hi there", "<|0.00|>hi<|0.40|>"], ["<|0.00|>hi<|0.30|>", "<|0.00|>hi<|0.30|>"])
    assert r.values["malformed_predictions"] == 1 and r.values["aas_ms"] == pytest.approx(100.0)
    # A single time token times no word (an undertrained model's answer): counted, not a crash.
    r = METRICS["timestamps"](["<|0.10|>", "the <|0.10|>", "<|0.00|>hi<|0.40|>"], ["<|0.00|>hi<|0.30|>"] * 3)
    assert r.values["malformed_predictions"] == 2 and r.values["aas_ms"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="example 0: the reference has no time token"):
        METRICS["timestamps"](["<|0.00|>hi<|0.30|>"], ["hi"])


def test_anchor_tokens_match_whether_or_not_a_word_has_a_space_before_it():
    # Models trained before the targets spaced their words emit "<|0.00|>hi<|0.40|>".
    spaced_ref = [format_timestamped([("hi", 0.0, 0.3), ("there", 0.3, 0.6)])]
    for hyp in ("<|0.00|>hi<|0.40|><|0.40|>there<|0.60|>", "<|0.00|> hi<|0.40|><|0.40|> there<|0.60|>"):
        r = METRICS["timestamps"]([hyp], spaced_ref)
        assert r.values["wer"] == 0.0
        assert r.values["aas_ms"] == pytest.approx(400 / 3)  # hi 100 ms, the gap 100 + 100, there 100: 3 tokens


# ---- results -----------------------------------------------------------------------------


def test_results_serialise_to_json_with_intervals_and_versions():
    r = METRICS["wer"](EN_HYPS, EN_REFS)
    d = json.loads(json.dumps(r.to_dict(bootstrap=200, per_example=True)))
    assert d["profile"] == "qwen_audio" and d["primary"] == "wer"
    assert d["ci95"]["wer"][0] <= d["values"]["wer"] <= d["ci95"]["wer"][1]
    assert d["versions"]["jiwer"] == importlib.metadata.version("jiwer")
    assert set(d["versions"]) == {"jiwer", "rapidfuzz", "transformers", "whisper-normalizer", "zhconv"}
    assert d["provenance"]["profile"] == "qwen_audio" and "evaluate_asr.py" in d["provenance"]["anchor"]
    none = METRICS["timestamps"]([[["no", 0.0, 0.1]]], [[["yes", 0.0, 0.1]]], profile="qaudio_words")
    assert "aas_ms" not in json.loads(json.dumps(none.to_dict()))["values"]
    with pytest.raises(ValueError, match="primary metric"):
        MetricResult("wer", "p", "en", 1, {"x": 1.0}, {"x": "%"}, primary="wer", higher_is_better=False)


def test_japanese_bleu_equals_sacrebleu_ja_mecab_when_the_extra_is_installed():
    pytest.importorskip("MeCab")
    pytest.importorskip("ipadic")
    hyps, refs = ["私は学生です。", "今日は晴れです"], ["私は学生である。", "今日は晴れだ"]
    r = METRICS["bleu"](hyps, refs, language="ja")
    assert r.values["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="ja-mecab").score)
