"""Caption metrics: the real Java tokenizer and METEOR from the pycocoevalcap wheel, aac-metrics
called directly, hand-computed ROUGE-L, SPIDEr composition, and the jar set-up's errors."""

import shutil

import pytest

from qaudio.metrics import METRICS, caption_jars
from qaudio.metrics import caption as caption_metric

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="caption metrics need a Java runtime")

CANDIDATES = ["A man is speaking while birds chirp.", "rain falls on a roof", "a dog barks", ""]
REFERENCES = [
    ["A man talks and birds are chirping.", "Birds chirp as a man speaks."],
    ["Rain is falling on a metal roof.", "Heavy rain on the roof."],
    ["a dog is barking"],
    "A car passes by.",
]


@pytest.fixture(scope="module")
def jar_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("caption-jars")


@pytest.fixture(scope="module")
def result(jar_cache):
    return METRICS["caption"](CANDIDATES, REFERENCES, cache_dir=str(jar_cache))


@pytest.mark.slow  # three JVM starts (PTB tokenizer twice, METEOR once): about 10-15 s
def test_caption_metrics_equal_aac_metrics_called_directly(result, jar_cache):
    from aac_metrics.functional.evaluate import evaluate

    refs = [r if isinstance(r, list) else [r] for r in REFERENCES]
    direct, _ = evaluate(
        CANDIDATES,
        refs,
        preprocess=True,
        cache_path=str(jar_cache),
        device="cpu",
        metrics=["bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"],
    )
    for name, value in direct.items():
        assert result.values[name] == pytest.approx(float(value), abs=1e-9), name
    assert 0 < result.values["meteor"] < 1
    # CIDEr-D and ROUGE-L are means of per-clip scores, which the bootstrap resamples.
    for name in ("cider_d", "rouge_l"):
        stats, aggregate = result.bootstrap[name]
        assert aggregate(stats) == pytest.approx(result.values[name])
    # Clip 3 by hand: PTB tokens [a, dog, barks] vs [a, dog, is, barking]; LCS 2, P 2/3, R 1/2,
    # ROUGE-L F with beta 1.2 = (1 + 1.44) P R / (R + 1.44 P).
    p, r = 2 / 3, 1 / 2
    assert result.per_example["rouge_l"][2] == pytest.approx((1 + 1.44) * p * r / (r + 1.44 * p))
    assert result.per_example["cider_d"][3] == 0.0  # the empty caption scores nothing


@pytest.mark.slow  # shares the real run above
def test_spider_is_never_a_number_without_spice(result):
    assert "spice" not in result.values and "spider" not in result.values
    assert result.primary == "cider_d"
    for name in ("spice", "spider"):
        why = result.not_computed[name]
        assert "CoreNLP 3.6.0" in why and "aac-metrics-download" in why
    assert result.versions["java"] and result.versions["aac-metrics"] == "0.5.4"
    assert set(result.details["timing"]) == {"ptb_tokenizer_s", "metrics_s"}


def test_spider_is_the_mean_of_cider_d_and_spice_when_spice_runs():
    import torch

    values, per_clip = {"cider_d": 1.0}, {"cider_d": [0.5, 1.5]}
    missing = caption_metric.add_spice(
        values, per_clip, lambda: ({"spice": torch.tensor(0.2)}, {"spice": torch.tensor([0.1, 0.3])})
    )
    assert missing == {}
    assert values["spider"] == pytest.approx(0.6) and per_clip["spider"] == pytest.approx([0.3, 0.9])

    def broken():
        raise RuntimeError("java.lang.OutOfMemoryError")

    values = {"cider_d": 1.0}
    missing = caption_metric.add_spice(values, {"cider_d": [1.0]}, broken)
    assert "spider" not in values and "OutOfMemoryError" in missing["spider"]


def test_missing_jars_name_the_jar_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(caption_jars, "_pycocoevalcap_dir", lambda: None)
    monkeypatch.setattr(caption_jars, "aac_metrics_cache_dir", lambda: tmp_path / "empty")
    with pytest.raises(ValueError, match=r"stanford-corenlp-3\.4\.1\.jar .*PTB tokenizer.*qaudio\[caption-jars\]"):
        caption_jars.prepare_caption_jars(tmp_path / "cache")


def test_corenlp_jars_from_aac_metrics_download_make_spice_runnable(tmp_path, monkeypatch):
    lib = tmp_path / "aac" / "aac-metrics" / "spice" / "lib"
    lib.mkdir(parents=True)
    for name in caption_jars.CORENLP_FOR_SPICE:
        (lib / name).write_bytes(b"stand-in")
    monkeypatch.setattr(caption_jars, "aac_metrics_cache_dir", lambda: tmp_path / "aac")
    setup = caption_jars.prepare_caption_jars(tmp_path / "cache")
    assert setup.spice_problem is None
    linked = setup.cache_path / "aac-metrics" / "spice" / "lib" / "stanford-corenlp-3.6.0.jar"
    assert linked.resolve() == (lib / "stanford-corenlp-3.6.0.jar").resolve()
    assert (setup.cache_path / "aac-metrics" / "meteor" / "meteor-1.5.jar").is_file()


def test_caption_input_errors(tmp_path):
    with pytest.raises(ValueError, match="English-only"):
        METRICS["caption"](["a"], ["a"], language="zh")
    with pytest.raises(ValueError, match="clip 0: every clip needs at least one non-empty reference"):
        METRICS["caption"](["a"], [[]])
    with pytest.raises(ValueError, match="java"):
        caption_jars.prepare_caption_jars(tmp_path, java_path=str(tmp_path / "no-java"))
    assert caption_metric._word_list_clips([["a", "dog", "barks"], ["a dog barks"]]) == [0]
