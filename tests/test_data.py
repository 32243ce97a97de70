"""The example schema and JSONL manifests."""

import json

import pytest

from qaudio.data import Example, ManifestError, example_from_dict, read_manifest, write_manifest


def good(**over):
    return {"id": "a", "audio": "a.wav", "duration": 1.5, "task": "asr", "target": "hi", **over}


def test_round_trip_with_relative_audio(tmp_path):
    (tmp_path / "clips").mkdir()
    examples = [
        Example(id="1", audio=str(tmp_path / "clips" / "1.wav"), duration=1.0, task="asr", target="one"),
        Example(
            id="2",
            audio=str(tmp_path / "clips" / "2.wav"),
            duration=2.0,
            task="aac",
            audio_lang="unknown",
            target=["a dog barks", "a dog is barking"],
            meta={"voice": "en"},
        ),
        Example(
            id="3",
            audio="/elsewhere/3.wav",
            duration=2.0,
            task="srwt",
            target="hi there",
            words=[["hi", 0.1, 0.3], ["there", 0.35, 0.7]],
        ),
    ]
    path = tmp_path / "m.jsonl"
    assert write_manifest(examples, path) == 3
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["audio"] == "clips/1.wav"  # under the manifest's folder: relative
    assert lines[2]["audio"] == "/elsewhere/3.wav"  # outside: absolute
    assert "question" not in lines[0]  # None fields are left out
    back = list(read_manifest(path))
    assert [e.audio for e in back] == [examples[0].audio, examples[1].audio, "/elsewhere/3.wav"]
    assert back[1].references == ["a dog barks", "a dog is barking"]
    assert back[2].words == [["hi", 0.1, 0.3], ["there", 0.35, 0.7]]


@pytest.mark.parametrize(
    "record, message",
    [
        ({"audio": "a.wav", "duration": 1, "task": "asr"}, "missing required field(s) id"),
        (good(duration=0), "field 'duration' must be a positive number"),
        (good(duration="long"), "field 'duration'"),
        (good(audio_lang="xx"), "field 'audio_lang' is 'xx'"),
        (good(text_lang="english"), "field 'text_lang' is 'english'"),
        (good(target=3), "field 'target'"),
        (good(words=[["hi", 0.5, 0.2]]), "field 'words' item 0"),
        (good(speaker="x"), "unknown field(s) speaker"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_validation_names_the_field(record, message):
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        example_from_dict(record, "m.jsonl:7")


def test_broken_manifest_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good()) + "\n\n" + '{"id": "b", "audio": \n')
    with pytest.raises(ManifestError, match=r"bad.jsonl:3: not valid JSON"):
        list(read_manifest(path))
    with pytest.raises(FileNotFoundError, match="expected a JSONL file"):
        list(read_manifest(tmp_path / "missing.jsonl"))
