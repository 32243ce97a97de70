"""The Hugging Face recipe on tiny datasets built here: save_to_disk folders with embedded
audio bytes, parquet files, and path columns. Audio is read with Audio(decode=False)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from test_recipes import write_audio

from qaudio.audio import SAMPLE_RATE
from qaudio.recipe import RecipeWarning, load_examples

datasets = pytest.importorskip("datasets")


def _wav_bytes(seconds: float, sr: int, channels: int = 1) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    tone = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([tone] * channels, axis=1) if channels > 1 else tone, sr, format="WAV")
    return buf.getvalue()


def _speech_dataset():
    rows = {
        "audio": [
            {"bytes": _wav_bytes(0.5, 8000, channels=2), "path": "a.wav"},
            {"bytes": _wav_bytes(0.25, 44100), "path": "b.wav"},
        ],
        "sentence": ["hello there", "good morning"],
        "emotion": [2, 0],
        "utt": ["spk1-0001", "spk2-0007"],
    }
    features = datasets.Features(
        {
            # Built as a plain struct and cast: encoding through Audio() itself would need torchcodec.
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "sentence": datasets.Value("string"),
            "emotion": datasets.ClassLabel(names=["neutral", "happy", "sad"]),
            "utt": datasets.Value("string"),
        }
    )
    ds = datasets.Dataset.from_dict(rows, features=features).cast_column("audio", datasets.Audio(decode=False))
    assert isinstance(ds.features["audio"], datasets.Audio)  # the layout hub datasets have
    return ds


def test_save_to_disk_dataset_with_embedded_bytes_is_cached_as_16k_mono_wav(tmp_path):
    datasets.DatasetDict({"test": _speech_dataset()}).save_to_disk(str(tmp_path / "ds"))
    cache = tmp_path / "cache"
    options = {"target_column": "sentence", "id_column": "utt", "cache_dir": str(cache)}
    first, second = load_examples("hf", tmp_path / "ds", "test", options=options)
    assert (first.id, first.target, first.task, first.audio_lang) == (
        "hf/test/ds/spk1-0001",
        "hello there",
        "asr",
        "en",
    )
    data, sr = sf.read(first.audio)
    assert sr == SAMPLE_RATE and data.ndim == 1 and len(data) == 8000  # 0.5 s of 8 kHz stereo -> 16 kHz mono
    assert first.duration == pytest.approx(0.5) and second.duration == pytest.approx(0.25, abs=1e-3)
    assert first.audio.startswith(str(cache))
    # A second run reuses the decoded files instead of writing them again.
    mtime = (cache / first.audio.split("/cache/")[1]).stat().st_mtime_ns
    again = next(iter(load_examples("hf", tmp_path / "ds", "test", options=options)))
    assert again.audio == first.audio and (cache / first.audio.split("/cache/")[1]).stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="no split 'train'; its splits: test"):
        list(load_examples("hf", tmp_path / "ds", "train", options=options))


def test_class_labels_become_names_for_classification_tasks(tmp_path):
    _speech_dataset().save_to_disk(str(tmp_path / "single"))  # a Dataset, not a DatasetDict
    options = {"label_column": "emotion", "cache_dir": str(tmp_path / "cache")}
    examples = list(load_examples("hf", tmp_path / "single", "train", task="ser", options=options))
    assert [(e.task, e.label, e.target) for e in examples] == [("ser", "sad", ""), ("ser", "neutral", "")]


def test_parquet_file_with_a_missing_column_names_the_columns_it_has(tmp_path):
    _speech_dataset().to_parquet(str(tmp_path / "test.parquet"))
    options = {"cache_dir": str(tmp_path / "cache")}
    with pytest.raises(ValueError, match="no target.*columns: audio, sentence, emotion, utt"):
        list(load_examples("hf", tmp_path / "test.parquet", "test", options=options))
    with pytest.raises(ValueError, match="no column for question_column='q'"):
        list(
            load_examples(
                "hf",
                tmp_path / "test.parquet",
                "test",
                options={**options, "target_column": "sentence", "question_column": "q"},
            )
        )
    examples = list(
        load_examples("hf", tmp_path / "test.parquet", "test", options={**options, "target_column": "sentence"})
    )
    assert [e.target for e in examples] == ["hello there", "good morning"]


def test_a_folder_of_hub_style_parquet_shards_with_audio_paths_and_captions(tmp_path):
    write_audio(tmp_path / "repo" / "clips" / "x.flac", 0.3, sr=22050)
    ds = datasets.Dataset.from_dict(
        {"audio": ["clips/x.flac", "clips/gone.flac"], "captions": [["a dog barks", "barking"], ["x"]]}
    )
    (tmp_path / "repo" / "data").mkdir()
    ds.to_parquet(str(tmp_path / "repo" / "data" / "validation-00000-of-00001.parquet"))
    options = {"target_column": "captions", "audio_lang": "unknown", "instruction": "caption_audiocaps"}
    with pytest.warns(RecipeWarning, match="skipped 1 row.*audio file missing.*gone.flac"):
        [ex] = load_examples("hf", tmp_path / "repo", "validation", task="aac", options=options)
    assert ex.target == ["a dog barks", "barking"] and ex.audio == str(tmp_path / "repo" / "clips" / "x.flac")
    assert ex.duration == pytest.approx(0.3) and ex.meta["instruction"] == "caption_audiocaps"
    assert (ex.audio_lang, ex.text_lang) == ("unknown", "en")
    with pytest.raises(ValueError, match="language 'xx' has no tag"):
        list(load_examples("hf", tmp_path / "repo", "validation", options={**options, "audio_lang": "xx"}))
    with pytest.raises(ValueError, match="unknown instruction 'caption_any'"):
        list(load_examples("hf", tmp_path / "repo", "validation", options={**options, "instruction": "caption_any"}))


def test_a_hub_id_that_cannot_be_loaded_says_what_was_tried(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ValueError, match="hub dataset 'someone/corpus' \\(needs network\\): ConnectionError: offline"):
        list(load_examples("hf", "someone/corpus", "test"))
