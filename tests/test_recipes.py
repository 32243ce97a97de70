"""The recipe base, load_examples, the manifest and synthetic recipes, a user's recipe file,
and the ``qaudio data`` command. Corpus recipes are tested in test_recipes_*.py, which use
:func:`write_audio` from here to build miniature copies of the official layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from qaudio.cli import main as cli
from qaudio.data import Example, read_manifest
from qaudio.recipe import Recipe, RecipeWarning, load_examples, read_table, recipe_table
from qaudio.specs import get_recipe, registry


def write_audio(path: Path, seconds: float = 0.5, sr: int = 16000, channels: int = 1, **kw) -> Path:
    """A short tone with a little noise (never silent), in whatever format the suffix says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    sf.write(path, data.astype(np.float32), sr, **kw)
    return path


def write_librispeech(root: Path, split: str = "dev-clean") -> Path:
    """A two-utterance LibriSpeech chapter (real id pattern, upper-case transcript, flac)."""
    chapter = root / "LibriSpeech" / split / "1089" / "134686"
    write_audio(chapter / "1089-134686-0000.flac", 0.75)
    write_audio(chapter / "1089-134686-0001.flac", 0.5)
    (chapter / "1089-134686.trans.txt").write_text(
        "1089-134686-0000 HE HOPED THERE WOULD BE STEW FOR DINNER\n"
        "1089-134686-0001 STUFF IT INTO YOU HIS BELLY COUNSELLED HIM\n"
    )
    return root


# ---- Registry and base class -----------------------------------------------------------------


def test_every_builtin_recipe_is_registered_under_its_name_with_layout_and_known_tasks():
    recipes = registry("data_recipes")
    tasks = registry("tasks")
    assert {
        "librispeech",
        "common_voice",
        "aishell1",
        "covost2",
        "clotho",
        "audiocaps",
        "clotho_aqa",
        "meld",
        "cochlscene",
        "vocalsound",
        "nsynth",
        "hf",
        "manifest",
        "synthetic",
    } <= set(recipes)
    for name, recipe in recipes.items():
        assert isinstance(recipe, Recipe) and recipe.name == name
        assert recipe.layout.strip(), name
        assert set(recipe.tasks) <= set(tasks), name
    table = recipe_table(recipes)
    assert "| covost2 | s2tt, asr | train, dev, test |" in table


def test_options_are_converted_by_type_and_unknown_ones_name_the_valid_ones():
    hf = get_recipe("hf")
    configured = hf.with_options({"streaming": "false", "config": "clean", "target_column": "none"})
    assert configured.streaming is False and configured.config == "clean" and configured.target_column is None
    assert hf.streaming is True  # the registered recipe is never mutated
    with pytest.raises(ValueError, match="no option colour.*audio_column"):
        hf.with_options({"colour": "red"})
    with pytest.raises(ValueError, match="expected true or false"):
        hf.with_options({"streaming": "maybe"})
    with pytest.raises(ValueError, match="takes no options"):
        get_recipe("librispeech").with_options({"x": "1"})


def test_bad_split_task_and_root_are_reported_with_the_choices_and_the_layout(tmp_path):
    with pytest.raises(ValueError, match="no split 'dev'.*dev-clean"):
        load_examples("librispeech", tmp_path, "dev")
    with pytest.raises(ValueError, match="cannot produce task 'aac'.*asr, srwt"):
        load_examples("librispeech", tmp_path, "dev-clean", task="aac")
    with pytest.raises(FileNotFoundError) as err:
        list(load_examples("librispeech", tmp_path / "missing", "dev-clean"))
    assert "does not exist" in str(err.value) and "openslr.org/12" in str(err.value) and ".trans.txt" in str(err.value)
    (tmp_path / "LibriSpeech" / "dev-clean").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="yielded no examples"):
        list(load_examples("librispeech", tmp_path, "dev-clean"))


def test_read_table_names_the_missing_columns_and_the_ones_found(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("file_name,caption\na.wav,x\n")
    with pytest.raises(ValueError, match="missing column.*caption_1; found: file_name, caption"):
        list(read_table(path, columns=("file_name", "caption_1")))


# ---- A user's own recipe file (the README example) -------------------------------------------

USER_RECIPE = """
from qaudio.data import Example
from qaudio.recipe import Recipe, audio_duration, read_table

class MyCorpus(Recipe):
    name = "my_corpus"
    tasks = ("asr",)
    splits = ("train", "test")
    homepage = "https://example.org/my-corpus"
    layout = "ROOT/<split>.tsv (columns: file, text) and ROOT/wav/<file>"

    def examples(self, root, split, task=None):
        for row in read_table(self.require(root / f"{split}.tsv"), delimiter="\\t", columns=("file", "text")):
            wav = root / "wav" / row["file"]
            yield Example(id=self.example_id(split, row["file"]), audio=str(wav),
                          duration=audio_duration(wav), task=self.task_or_default(task), target=row["text"])

RECIPE = MyCorpus()
"""


def test_a_corpus_is_added_by_writing_one_file(tmp_path):
    recipe_file = tmp_path / "my_corpus.py"
    recipe_file.write_text(USER_RECIPE)
    corpus = tmp_path / "corpus"
    write_audio(corpus / "wav" / "a.wav", 0.25)
    (corpus / "test.tsv").write_text("file\ttext\na.wav\thello world\n")
    [ex] = load_examples(str(recipe_file), corpus, "test")
    assert (ex.id, ex.target, ex.task) == ("my_corpus/test/a.wav", "hello world", "asr")
    assert ex.duration == pytest.approx(0.25)
    with pytest.raises(FileNotFoundError, match="(?s)train.tsv does not exist.*example.org/my-corpus"):
        list(load_examples(str(recipe_file), corpus, "train"))


# ---- manifest and synthetic ------------------------------------------------------------------


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_manifest_recipe_reads_a_file_or_a_split_in_a_folder_and_filters_by_task(tmp_path):
    write_audio(tmp_path / "audio" / "a.wav")
    records = [
        {"id": "a", "audio": "audio/a.wav", "duration": 0.5, "task": "asr", "target": "hi"},
        {"id": "b", "audio": "audio/a.wav", "duration": 0.5, "task": "ser", "label": "happy"},
    ]
    _write_jsonl(tmp_path / "test.jsonl", records)
    from_file = list(load_examples("manifest", tmp_path / "test.jsonl"))
    assert [e.id for e in from_file] == ["a", "b"]
    assert from_file[0].audio == str(tmp_path / "audio" / "a.wav")  # relative to the manifest, made absolute
    [only_ser] = load_examples("manifest", tmp_path, "test", task="ser")
    assert only_ser.label == "happy"
    with pytest.raises(FileNotFoundError, match="dev.jsonl does not exist"):
        list(load_examples("manifest", tmp_path, "dev"))
    _write_jsonl(tmp_path / "bad.jsonl", [{"id": "x", "audio": "a.wav", "task": "asr"}])
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing required field\(s\) duration"):
        list(load_examples("manifest", tmp_path / "bad.jsonl"))


def test_synthetic_recipe_reads_the_generator_layout_and_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="qaudio synth --out"):
        list(load_examples("synthetic", tmp_path / "synth", "train"))
    write_audio(tmp_path / "synth" / "audio" / "0.wav")
    _write_jsonl(
        tmp_path / "synth" / "dev.jsonl",
        [
            {
                "id": "0",
                "audio": "audio/0.wav",
                "duration": 0.5,
                "task": "srwt",
                "target": "hi",
                "words": [["hi", 0.1, 0.4]],
            },
        ],
    )
    [ex] = load_examples("synthetic", tmp_path / "synth", "dev", task="srwt")
    assert ex.words == [["hi", 0.1, 0.4]] and Path(ex.audio).is_file()
    with pytest.raises(FileNotFoundError, match="(?s)train.jsonl does not exist.*qaudio synth --out"):
        list(load_examples("synthetic", tmp_path / "synth", "train"))


# ---- The `qaudio data` command ---------------------------------------------------------------


def test_cli_writes_a_manifest_that_reads_back_with_relative_audio_paths(tmp_path, capsys):
    write_librispeech(tmp_path / "corpus")
    out = tmp_path / "corpus" / "dev.jsonl"
    assert (
        cli(["data", "librispeech", "--root", str(tmp_path / "corpus"), "--split", "dev-clean", "--out", str(out)]) == 0
    )
    assert "wrote 2 examples" in capsys.readouterr().err
    first = json.loads(out.read_text().splitlines()[0])
    assert first["audio"] == "LibriSpeech/dev-clean/1089/134686/1089-134686-0000.flac"  # relative to the manifest
    examples = list(read_manifest(out))
    assert [e.target for e in examples] == [
        "HE HOPED THERE WOULD BE STEW FOR DINNER",
        "STUFF IT INTO YOU HIS BELLY COUNSELLED HIM",
    ]
    assert Path(examples[0].audio).is_file()
    assert not list(out.parent.glob("*.partial"))


def test_cli_prints_to_stdout_with_limit_and_reports_errors_in_one_line(tmp_path, capsys):
    write_librispeech(tmp_path)
    assert cli(["data", "librispeech", "--root", str(tmp_path), "--split", "dev-clean", "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and Example(**json.loads(lines[0])).id == "librispeech/dev-clean/1089-134686-0000"
    assert (
        cli(
            [
                "data",
                "librispeech",
                "--root",
                str(tmp_path / "nope"),
                "--split",
                "dev-clean",
                "--out",
                str(tmp_path / "x.jsonl"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()
    assert cli(["data", "hf", "--root", ".", "--option", "streaming"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert cli(["data", "--list"]) == 0 and "| librispeech | asr, srwt |" in capsys.readouterr().out
    assert cli(["data", "clotho_aqa", "--info", "--option", "answers=all"]) == 0
    info = capsys.readouterr().out
    assert "audio_files/*.wav" in info and "answers = 'all'  # majority: one example per question" in info


def test_cli_prints_skipped_rows_as_one_warning(tmp_path, capsys):
    write_librispeech(tmp_path)
    (tmp_path / "LibriSpeech/dev-clean/1089/134686/1089-134686-0001.flac").unlink()
    assert cli(["data", "librispeech", "--root", str(tmp_path), "--split", "dev-clean"]) == 0
    err = capsys.readouterr().err
    assert "warning: librispeech dev-clean: skipped 1 row(s): audio file missing" in err
    with pytest.warns(RecipeWarning, match="skipped 1 row"):
        assert len(list(load_examples("librispeech", tmp_path, "dev-clean"))) == 1


def test_missing_undecodable_and_empty_audio_files_are_skipped_with_their_reason(tmp_path):
    audio = tmp_path / "development"
    write_audio(audio / "good.wav")
    (audio / "corrupt.wav").write_bytes(b"RIFF but not really audio")
    sf.write(audio / "empty.wav", np.zeros(0, dtype=np.float32), 44100)
    captions = "".join(f"{name},a,b,c,d,e\n" for name in ("good.wav", "corrupt.wav", "empty.wav", "absent.wav"))
    (tmp_path / "clotho_captions_development.csv").write_text(
        "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n" + captions
    )
    with pytest.warns(RecipeWarning) as caught:
        [ex] = load_examples("clotho", tmp_path, "development")
    messages = " | ".join(str(w.message) for w in caught if w.category is RecipeWarning)
    assert ex.id == "clotho/development/good.wav"
    assert "skipped 1 row(s): audio file cannot be decoded (first: " in messages and "corrupt.wav" in messages
    assert "skipped 1 row(s): audio file is empty" in messages and "skipped 1 row(s): audio file missing" in messages
