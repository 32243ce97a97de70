"""End to end through a real (tiny, random) AudioLM saved to disk and loaded with qaudio.load.

A random model's words are noise, so these tests check what must hold for any weights:
batched answers equal one-by-one answers (fp32), constrained decoding returns the most
likely label of the set (checked against a plain forward pass), long audio runs, evaluation
keeps input order, and the CLI prints what the API returns.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import qaudio
from qaudio.cli import main as cli_main
from qaudio.data import Example
from qaudio.infer import Pipeline
from qaudio.specs import get_task

SR = 16_000
MAX_NEW_TOKENS = 6  # a random model never stops on its own: keep generation short


def _clip(seconds: float, seed: int) -> np.ndarray:
    """Tone bursts with pauses (speech-like on/off structure), reproducible."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) * (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > 0)
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def tiny_model_dir(path) -> str:
    """The tiny preset, saved. Its matrices are redrawn with a large spread: at the default
    init (std 0.02) the residual stream dominates and a random model repeats its last prompt
    token whatever the audio, which would make the equality checks below vacuous."""
    from qaudio.config import PRESETS
    from qaudio.model import AudioLM

    torch.manual_seed(0)
    lm = AudioLM.build(PRESETS["tiny"])
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if p.dim() == 2 and name.startswith(("language_model", "projector")):
                p.normal_(0.0, 0.5)
    lm.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def model(model_dir) -> Pipeline:
    return qaudio.load(model_dir, device="cpu", max_new_tokens=MAX_NEW_TOKENS)


@pytest.fixture(scope="module")
def clips():
    return [(_clip(s, i), SR) for i, s in enumerate((1.3, 4.0, 0.6, 2.2))]


def test_load_gives_a_working_model(model, clips):
    r = model.transcribe(clips[0])
    assert r.ok and r.task == "asr" and r.language == "en" and isinstance(r.text, str)
    assert r.timing["audio_seconds"] == 1.3 and r.timing["windows"] == 1 and r.timing["seconds"] > 0
    assert next(model.model.parameters()).dtype == torch.float32
    json.dumps(r.to_dict())


def test_batched_equals_one_by_one(model, clips):
    for method, kwargs in ((model.transcribe, {"timestamps": True}), (model.ask, {"question": "What do you hear?"})):
        batched = method(clips, **kwargs)
        single = [method(c, **kwargs) for c in clips]
        assert len({r.raw for r in single}) > 1  # the answers depend on the audio
        assert [r.raw for r in batched] == [r.raw for r in single], method.__name__
        assert [r.text for r in batched] == [r.text for r in single]


def test_mixed_tasks_in_one_batch_equal_separate_calls(model, clips):
    queries = [
        get_task("asr").request(),
        get_task("aac").request(),
        get_task("asr").request(timestamps=True),
        get_task("s2tt").request("de", "en"),
    ]
    mixed = model.run(clips, queries)
    alone = [model.run([c], [q])[0] for c, q in zip(clips, queries)]
    assert [r.raw for r in mixed] == [r.raw for r in alone]
    assert [r.task for r in mixed] == ["asr", "aac", "srwt", "s2tt"]


def test_classify_picks_the_most_likely_label(model, clips):
    results = model.classify(clips, task="emotion")
    labels = get_task("ser").labels
    for r in results:
        assert r.label in labels and r.text == r.label and r.language is None
        assert sum(r.scores.values()) == pytest.approx(1.0, abs=1e-4)
        assert r.label == max(r.scores, key=r.scores.get)
    # The scores come from the encoder-cached path; recompute one clip's with a plain forward pass.
    lm = model.model
    prompt = get_task("ser").request().prompt()
    batch = lm.processor.prepare([clips[1][0]] * len(labels), [prompt] * len(labels), list(labels))
    with torch.inference_mode():
        out = lm(**batch)
    logp = -out.loss_sum  # summed log-likelihood of each label and its end token
    probs = torch.softmax(logp.double(), 0).numpy()
    np.testing.assert_allclose([results[1].scores[lab] for lab in labels], probs, atol=1e-4)
    single = model.classify(clips[1], task="emotion")
    assert single.label == results[1].label
    assert model.classify(clips[0], task="scene").label in get_task("asc").labels
    assert model.classify(clips[0], task="vocal", labels=["cough", "laughter"]).label in ("cough", "laughter")
    note = model.classify(clips[0], task="note")  # no label set: generated
    assert note.task == "mna" and note.scores is None


def test_long_audio_runs_end_to_end(model):
    pause = np.zeros(SR // 2, dtype=np.float32)  # 27.0-27.5 s and 53.5-54.0 s: in each window's last 5 s
    x = np.concatenate([_clip(27.0, 7), pause, _clip(26.0, 8), pause, _clip(10.0, 9)])
    r = model.transcribe((x, SR), timestamps=True)
    assert r.ok and r.timing["windows"] == 3 and len(r.segments) == 3
    assert 27.0 < r.segments[0].end < 27.5 and 53.5 < r.segments[1].end < 54.0  # cut in the pauses
    assert r.segments[-1].end == pytest.approx(len(x) / SR)
    assert all(0 <= w.start <= len(x) / SR for w in r.words or [])
    r = model.classify((x, SR), task="emotion")
    assert r.label in get_task("ser").labels and len(r.segments) == 3


def test_run_examples_keeps_input_order(model, tmp_path):
    examples = []
    for i, s in enumerate((0.8, 3.0, 1.5, 2.5, 0.5)):
        path = tmp_path / f"{i}.wav"
        sf.write(path, _clip(s, 20 + i), SR)
        examples.append(Example(id=str(i), audio=str(path), duration=s, task="asr", target="x"))
    examples.append(Example(id="bad", audio=str(tmp_path / "missing.wav"), duration=1.0, task="asr", target="x"))
    results = model.run_examples(examples, get_task("asr"), batch_size=2, progress=False)
    assert [r.ok for r in results] == [True] * 5 + [False]
    assert "missing.wav" in results[-1].error
    assert [r.raw for r in results[:5]] == [model.transcribe(ex.audio).raw for ex in examples[:5]]
    labelled = model.run_examples(examples[:3], get_task("ser"), labels=["happy", "sad"], progress=False)
    assert all(r.label in ("happy", "sad") for r in labelled)


def test_cli_run_prints_one_json_object_per_file(model_dir, tmp_path, capsys):
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.flac"))
        sf.write(paths[-1], _clip(1.0 + i, 30 + i), 22_050)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not a wav")
    code = cli_main(
        [
            "run",
            model_dir,
            *paths,
            str(bad),
            "--task",
            "asr",
            "--json",
            "--timestamps",
            "--max-new-tokens",
            str(MAX_NEW_TOKENS),
            "--no-progress",
        ]
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # one file failed
    assert [d["file"] for d in lines] == [*paths, str(bad)]
    assert all(d["error"] is None and d["task"] == "srwt" for d in lines[:3])
    assert "bad.wav" in lines[3]["error"] and "cannot decode" in lines[3]["error"]
    code = cli_main(["run", model_dir, paths[0], "--task", "ser", "--max-new-tokens", str(MAX_NEW_TOKENS)])
    out = capsys.readouterr().out.strip()
    assert code == 0 and out in get_task("ser").labels
    assert cli_main(["run", model_dir, paths[0], "--task", "nope"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
