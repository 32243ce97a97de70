"""qaudio tts-augment: domain sentences -> ASR examples with word timings, voices and noise."""

import hashlib

import numpy as np
import pytest

espeak = pytest.importorskip("qaudio.synth.espeak")
if not espeak.available():
    pytest.skip("eSpeak NG (espeakng-loader) is not installed", allow_module_level=True)

from qaudio.audio import load_audio  # noqa: E402
from qaudio.cli import main as qaudio_main  # noqa: E402
from qaudio.data import read_manifest  # noqa: E402
from qaudio.specs import get_task  # noqa: E402
from qaudio.synth.espeak import synthesize  # noqa: E402

LINES = ["# a comment", "The patient was given 20 mg of amoxicillin.", "", "Schedule a follow-up MRI in two weeks."]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "domain.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def _run(text_file, out, *extra):
    return qaudio_main(
        ["tts-augment", "--text", str(text_file), "--out", str(out), "--quiet", "--workers", "1", *extra]
    )


def test_every_line_becomes_examples_with_timings_voices_and_noise(text_file, tmp_path):
    out = tmp_path / "aug"
    assert _run(text_file, out, "--copies", "2", "--noise", "pink,street", "--snr", "10", "10", "--srwt") == 0
    examples = list(read_manifest(out / "train.jsonl"))
    assert len(examples) == 2 * 2 * 2  # lines x copies x (asr, srwt)
    asr = [e for e in examples if e.task == "asr"]
    assert [e.target for e in asr] == [LINES[1], LINES[1], LINES[3], LINES[3]]
    assert all(e.meta["instruction"] == "itn" for e in asr)  # written targets keep digits and casing
    assert {e.meta["noise"] for e in examples} <= {"pink", "street"}
    for e in examples:
        e.request(get_task(e.task)).prompt()
        starts, ends = [w[1] for w in e.words], [w[2] for w in e.words]
        assert all(s < t for s, t in zip(starts, ends)) and all(t <= s for t, s in zip(ends, starts[1:]))
        assert ends[-1] <= e.duration + 1e-3
    srwt = [e for e in examples if e.task == "srwt"]
    assert srwt[0].target == "the patient was given 20 mg of amoxicillin"
    assert [w for w, _, _ in srwt[0].words] == srwt[0].target.split()
    # the background is really there: the noisy clip differs from clean speech of the same voice
    e = asr[0]
    clean = synthesize(LINES[1], e.meta["voice"], rate=e.meta["rate"], pitch=e.meta["pitch"]).samples
    noisy = load_audio(e.audio).samples
    residual = noisy[: len(clean)] - clean * (np.dot(noisy[: len(clean)], clean) / np.dot(clean, clean))
    snr = 10 * np.log10(np.mean(clean**2) / np.mean(residual**2))
    assert 5 < snr < 15  # asked for 10 dB (PCM-16 rounding and the fit leave a little slack)


def test_same_seed_same_bytes_and_spoken_targets(text_file, tmp_path):
    for name in ("a", "b"):
        assert _run(text_file, tmp_path / name, "--target", "spoken", "--voices", "en+m3,en+f2") == 0
    a, b = ((tmp_path / n / "train.jsonl").read_bytes() for n in "ab")
    assert a == b
    wav = lambda n: hashlib.sha256((tmp_path / n / "audio" / "tts-00001-0.wav").read_bytes()).hexdigest()  # noqa: E731
    assert wav("a") == wav("b")
    examples = list(read_manifest(tmp_path / "a" / "train.jsonl"))
    assert examples[1].target == "schedule a follow-up mri in two weeks"
    assert {e.meta["voice"] for e in examples} <= {"en+m3", "en+f2"}


def test_bad_input_gives_one_clear_line(text_file, tmp_path, capsys):
    assert _run(tmp_path / "missing.txt", tmp_path / "x") == 2
    assert "does not exist" in capsys.readouterr().err
    assert _run(text_file, tmp_path / "x", "--noise", "rain") == 2
    assert "unknown --noise rain" in capsys.readouterr().err
    assert _run(text_file, tmp_path / "x", "--voices", "en,zz") == 2
    assert "unknown eSpeak NG voice 'zz'" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    assert _run(empty, tmp_path / "x") == 2
    assert "holds no sentences" in capsys.readouterr().err
    assert _run(text_file, tmp_path / "y") == 0
    assert _run(text_file, tmp_path / "y") == 2
    assert "--force" in capsys.readouterr().err
