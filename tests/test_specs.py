"""Task specs: the registry, user spec files by path, targets and parsing."""

import pytest

from qaudio.data import Example
from qaudio.specs import get_task, registry

ALL_TASKS = ["asr", "s2tt", "srwt", "aac", "aqa", "ser", "asc", "vsc", "mna"]


def test_every_task_is_registered_with_a_metric():
    tasks = registry("tasks")
    assert list(tasks) == ALL_TASKS
    assert {t.metric for t in tasks.values()} == {"wer", "bleu", "timestamps", "caption", "aqa", "accuracy", "note"}


def test_timestamp_task_target_and_parse():
    srwt = get_task("srwt")
    ex = Example(
        id="x",
        audio="x.wav",
        duration=1,
        task="srwt",
        target="hi there",
        words=[["hi", 0.1, 0.3], ["there", 0.35, 0.7]],
    )
    (target,) = srwt.targets(ex)
    assert target == "<|0.10|> hi<|0.30|><|0.35|> there<|0.70|>"
    pred = srwt.parse(target)
    assert (
        pred.text == "hi there"
        and [(w.word, w.start, w.end) for w in pred.words] == [("hi", 0.1, 0.3), ("there", 0.35, 0.7)]
        and not pred.problems
    )
    with pytest.raises(ValueError, match="has no 'words'"):
        srwt.targets(Example(id="y", audio="y.wav", duration=1, task="srwt", target="hi"))


def test_classification_and_caption_targets():
    ser = get_task("ser")
    ex = Example(id="x", audio="x.wav", duration=1, task="ser", label="Happy")
    assert ser.targets(ex) == ["happy"]
    assert ser.parse("angry<|endoftext|>").label == "angry"
    assert ser.parse("bored").problems
    aac = get_task("aac")
    ex = Example(
        id="c", audio="c.wav", duration=1, task="aac", audio_lang="unknown", target=["a beep", " ", "two beeps"]
    )
    assert aac.targets(ex) == ["a beep", "two beeps"]
    with pytest.raises(ValueError, match="empty target"):
        get_task("asr").targets(Example(id="e", audio="e.wav", duration=1, task="asr", target="  "))


def test_user_task_file_by_path(tmp_path):
    path = tmp_path / "keywords.py"
    path.write_text(
        "from qaudio.tags import TagPath\nfrom qaudio.task import Task\n"
        "TASK = Task(name='kws', tag_path=TagPath('analysis', 'keyword', 'event'), metric='accuracy', speech=False)\n"
    )
    task = get_task(str(path))
    assert task.name == "kws"
    ex = Example(id="k", audio="k.wav", duration=1, task="kws", target="dog")
    assert ex.request(task).prompt() == "<|startofanalysis|><|unknown|><|keyword|><|en|><|notimestamps|><|event|>"
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines no TASK"):
        get_task(str(tmp_path / "empty.py"))
