"""Sound, music and paralinguistic corpus recipes on miniature copies of their official
layouts: Clotho, AudioCaps, Clotho-AQA, MELD, CochlScene, VocalSound and NSynth."""

from __future__ import annotations

import csv
import json

import pytest
from test_recipes import write_audio

from qaudio.recipe import RecipeWarning, load_examples
from qaudio.specs import get_task

# ---- Clotho ----------------------------------------------------------------------------------

CLOTHO_HEADER = ["file_name", "caption_1", "caption_2", "caption_3", "caption_4", "caption_5"]


def _write_csv(path, header, rows, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.mark.parametrize("audio_folder", ["development", "clotho_audio_files/development", "clotho_audio_development"])
def test_clotho_yields_five_captions_per_file_from_any_documented_folder(tmp_path, audio_folder):
    name = "Rain falling, on a tin roof.wav"  # Freesound titles: spaces and commas, quoted in the CSV
    write_audio(tmp_path / audio_folder / name, 0.4, sr=44100)
    _write_csv(
        tmp_path / "clotho_csv_files" / "clotho_captions_development.csv",
        CLOTHO_HEADER,
        [
            [
                name,
                "Rain falls on a metal roof.",
                "Water drips, steadily.",
                "A steady rain.",
                "Rain on tin.",
                "Drops hit a roof.",
            ]
        ],
    )
    [ex] = load_examples("clotho", tmp_path, "development")
    assert ex.target[1] == "Water drips, steadily." and len(ex.target) == 5
    assert (ex.task, ex.audio_lang, ex.text_lang) == ("aac", "unknown", "en")
    assert ex.duration == pytest.approx(0.4) and ex.id == f"clotho/development/{name}"


def test_clotho_names_the_expected_files_when_the_layout_is_wrong(tmp_path):
    _write_csv(tmp_path / "clotho_captions_validation.csv", CLOTHO_HEADER, [])
    with pytest.raises(
        FileNotFoundError, match="(?s)no audio folder.*clotho_audio_validation.*zenodo.org/records/4783391"
    ):
        list(load_examples("clotho", tmp_path, "validation"))


# ---- AudioCaps -------------------------------------------------------------------------------


def test_audiocaps_groups_caption_rows_per_clip_and_finds_each_file_naming(tmp_path):
    _write_csv(
        tmp_path / "dataset" / "test.csv",
        ["audiocap_id", "youtube_id", "start_time", "caption"],
        [
            *[[str(103549 + i), "--0w1YA1Hm4", "30", f"A vehicle engine revs, caption {i}"] for i in range(5)],
            ["97151", "-1nilez17Dg", "0", "People talk, then a door slams"],
            ["97152", "-AheI8Epim4", "30", "Gone from YouTube"],
            ["97153", "-BUWGM7qeUM", "10", "Named by audiocap id"],
        ],
    )
    write_audio(tmp_path / "audio" / "test" / "--0w1YA1Hm4_30.wav", 0.3)
    write_audio(tmp_path / "audio" / "test" / "Y-1nilez17Dg.flac", 0.2)
    write_audio(tmp_path / "audio" / "test" / "97153.wav", 0.1)
    with pytest.warns(RecipeWarning, match="skipped 1 row.*-AheI8Epim4 at 30s"):
        examples = list(load_examples("audiocaps", tmp_path, "test"))
    assert [e.id for e in examples] == [
        "audiocaps/test/--0w1YA1Hm4_30",
        "audiocaps/test/-1nilez17Dg_0",
        "audiocaps/test/-BUWGM7qeUM_10",
    ]
    first = examples[0]
    assert first.target == [f"A vehicle engine revs, caption {i}" for i in range(5)]
    assert first.meta["instruction"] == "caption_audiocaps" and first.meta["audiocap_ids"][0] == "103549"
    assert first.request(get_task("aac")).prompt().endswith("<|caption_audiocaps|>")
    assert examples[1].audio.endswith("Y-1nilez17Dg.flac") and examples[2].audio.endswith("97153.wav")


# ---- Clotho-AQA ------------------------------------------------------------------------------

AQA_HEADER = ["file_name", "QuestionText", "answer", "confidence"]


def _clotho_aqa(root):
    write_audio(root / "audio_files" / "Birds chirping.wav", 0.3, sr=44100)
    _write_csv(
        root / "clotho_aqa_val.csv",
        AQA_HEADER,
        [
            ["Birds chirping.wav", "Are birds chirping?", "yes", "yes"],
            ["Birds chirping.wav", "Are birds chirping?", "Yes", "maybe"],
            ["Birds chirping.wav", "Are birds chirping?", "no", "no"],
            ["Birds chirping.wav", "What is making the sound?", "a bird", "maybe"],
            ["Birds chirping.wav", "What is making the sound?", "birds.", "yes"],
            ["Birds chirping.wav", "What is making the sound?", "wind", "no"],
            ["Missing file.wav", "Is it raining?", "no", "yes"],
        ],
    )
    return root


def test_clotho_aqa_takes_the_majority_answer_else_the_most_confident(tmp_path):
    with pytest.warns(RecipeWarning, match="skipped 1 row.*Missing file.wav"):
        yes_no, open_ended = load_examples("clotho_aqa", _clotho_aqa(tmp_path), "val")
    assert (yes_no.question, yes_no.target, yes_no.meta["yes_no"]) == ("Are birds chirping?", "yes", True)
    assert (open_ended.target, open_ended.meta["yes_no"]) == ("birds", False)  # three answers: highest confidence
    assert open_ended.meta["answers"] == ["a bird", "birds", "wind"]
    assert yes_no.audio_lang == "unknown" and yes_no.request(get_task("aqa")).prompt().endswith(
        "<|question|>Are birds chirping?<|answer|>"
    )


def test_clotho_aqa_all_answers_mode_yields_every_annotator(tmp_path):
    with pytest.warns(RecipeWarning):
        examples = list(load_examples("clotho_aqa", _clotho_aqa(tmp_path), "val", options={"answers": "all"}))
    assert [e.target for e in examples] == ["yes", "yes", "no", "a bird", "birds", "wind"]
    assert len({e.id for e in examples}) == 6
    with pytest.raises(ValueError, match="answers='some'"):
        list(load_examples("clotho_aqa", tmp_path, "val", options={"answers": "some"}))


# ---- MELD ------------------------------------------------------------------------------------

MELD_HEADER = [
    "Sr No.",
    "Utterance",
    "Speaker",
    "Emotion",
    "Sentiment",
    "Dialogue_ID",
    "Utterance_ID",
    "Season",
    "Episode",
    "StartTime",
    "EndTime",
]


def test_meld_maps_emotions_repairs_text_and_skips_missing_clips(tmp_path):
    base = tmp_path / "MELD.Raw"
    _write_csv(
        base / "dev_sent_emo.csv",
        MELD_HEADER,
        [
            [
                "1",
                "Oh my God, he\u00e2\u0080\u0099s lost it.",
                "Phoebe",
                "joy",
                "positive",
                "0",
                "0",
                "4",
                "7",
                "00:20:57,256",
                "00:21:00,049",
            ],
            [
                "2",
                "I\u0092m fine.",
                "Monica",
                "sadness",
                "negative",
                "0",
                "1",
                "4",
                "7",
                "00:21:00,100",
                "00:21:01,200",
            ],
            ["3", "What?", "Ross", "surprise", "negative", "110", "7", "4", "7", "00:21:02,000", "00:21:03,000"],
        ],
    )
    write_audio(base / "dev_splits_complete" / "dia0_utt0.wav", 0.3)
    write_audio(base / "dev_splits_complete" / "dia0_utt1.wav", 0.2)
    with pytest.warns(RecipeWarning, match="skipped 1 row.*dia110_utt7"):
        joy, sad = load_examples("meld", tmp_path, "dev")
    assert (joy.label, sad.label) == ("happy", "sad")
    assert joy.meta["text"] == "Oh my God, he\u2019s lost it." and sad.meta["text"] == "I\u2019m fine."
    assert joy.id == "meld/dev/dia0_utt0" and joy.meta["speaker"] == "Phoebe" and joy.meta["emotion"] == "joy"
    assert set(e.label for e in (joy, sad)) <= set(get_task("ser").labels)


def test_meld_without_extracted_wavs_says_how_to_extract_them(tmp_path):
    _write_csv(tmp_path / "test_sent_emo.csv", MELD_HEADER, [])
    (tmp_path / "output_repeated_splits_test").mkdir()
    (tmp_path / "output_repeated_splits_test" / "dia0_utt0.mp4").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no extracted dia<D>_utt<U>.wav files"):
        list(load_examples("meld", tmp_path, "test"))


# ---- CochlScene ------------------------------------------------------------------------------


def test_cochlscene_labels_are_the_class_folders_lower_cased(tmp_path):
    write_audio(tmp_path / "CochlScene" / "Val" / "CrowdedIndoor" / "CrowdedIndoor_user0105_1.wav", 0.2, sr=44100)
    write_audio(tmp_path / "CochlScene" / "Val" / "Bus" / "Bus_user0001_2.wav", 0.2, sr=44100)
    examples = list(load_examples("cochlscene", tmp_path, "val"))
    assert [e.label for e in examples] == ["bus", "crowdedindoor"]
    assert all(e.task == "asc" and e.audio_lang == "unknown" for e in examples)
    write_audio(tmp_path / "CochlScene" / "Val" / "Beach" / "x.wav", 0.2)
    with pytest.raises(FileNotFoundError, match="class folders \\['Beach'\\]"):
        list(load_examples("cochlscene", tmp_path, "val"))


# ---- VocalSound ------------------------------------------------------------------------------


def test_vocalsound_reads_label_from_file_name_and_split_from_speaker_lists(tmp_path):
    for name in ("f0003_0_cough.wav", "f0003_1_laughter.wav", "m0105_0_throatclearing.wav", "m0200_0_sniff.wav"):
        write_audio(tmp_path / "audio_16k" / name, 0.2)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "tr_meta.csv").write_text(
        "f0003,Female,42,China,Chinese,None\nm0200,Male,30,USA,English,None\n"
    )
    (tmp_path / "meta" / "te_meta.csv").write_text(
        "spk_id,gender,age,country,language,health\nm0105,Male,25,India,Hindi,None\n"
    )
    train = list(load_examples("vocalsound", tmp_path, "train"))
    assert [(e.meta["speaker"], e.label) for e in train] == [
        ("f0003", "cough"),
        ("f0003", "laughter"),
        ("m0200", "sniff"),
    ]
    [test] = load_examples("vocalsound", tmp_path, "test")
    assert (test.label, test.task) == ("throatclearing", "vsc")
    # the prompt Qwen-Audio used for VocalSound, exactly
    assert (
        test.request(get_task("vsc")).prompt()
        == "<|startofanalysis|><|en|><|keyword|><|en|><|notimestamps|><|vocal_classification|>"
    )
    assert len(list(load_examples("vocalsound", tmp_path, "all"))) == 4
    with pytest.raises(FileNotFoundError, match="val_meta.csv does not exist"):
        list(load_examples("vocalsound", tmp_path, "val"))


# ---- NSynth ----------------------------------------------------------------------------------


def test_nsynth_targets_come_from_the_mna_task_note_target(tmp_path):
    split = tmp_path / "nsynth-valid"
    notes = {
        "bass_synthetic_033-022-050": {
            "note_str": "bass_synthetic_033-022-050",
            "pitch": 22,
            "velocity": 50,
            "instrument_family_str": "bass",
            "instrument_str": "bass_synthetic_033",
            "qualities_str": ["dark"],
            "sample_rate": 16000,
        },
        "keyboard_electronic_001-021-127": {
            "note_str": "keyboard_electronic_001-021-127",
            "pitch": 21,
            "velocity": 127,
            "instrument_family_str": "keyboard",
            "instrument_str": "keyboard_electronic_001",
            "qualities_str": [],
            "sample_rate": 16000,
        },
    }
    (split / "audio").mkdir(parents=True)
    (split / "examples.json").write_text(json.dumps(notes))
    for name in notes:
        write_audio(split / "audio" / f"{name}.wav", 0.25)
    bass, keys = load_examples("nsynth", tmp_path, "valid")
    assert (bass.target, keys.target) == ("bass, pitch 22", "keyboard, pitch 21")
    assert bass.meta["velocity"] == 50 and bass.audio_lang == "unknown" and bass.task == "mna"
    notes["bass_synthetic_033-022-050"]["instrument_family_str"] = "kazoo"
    (split / "examples.json").write_text(json.dumps(notes))
    with pytest.raises(ValueError, match="instrument family 'kazoo'"):
        list(load_examples("nsynth", tmp_path, "valid"))
