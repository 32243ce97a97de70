"""``qaudio check`` reports an answer that changes with the batch size or dtype, with both outputs."""

from __future__ import annotations

import argparse

import numpy as np
import soundfile as sf
from fixtures.standin_lm import StandInLM

from qaudio import check
from qaudio.infer import Pipeline

SR = 16_000


class BatchSensitiveLM(StandInLM):
    """Answers each clip with its length, except that in batches of more than 2 the shortest
    clip's answer flips (an injected padding bug); bf16 flips nothing."""

    def generate(self, batch, max_new_tokens=128, **kwargs):
        lengths = [len(x) for x in batch["audios"]]
        out = [f"clip of {n} samples" for n in lengths]
        if len(lengths) > 2:
            out[int(np.argmin(lengths))] = "clip of many samples"
        return out


def test_check_reports_an_injected_difference(tmp_path, capsys):
    files = []
    for k, seconds in enumerate((0.5, 0.8, 1.1)):
        t = np.arange(int(seconds * SR)) / SR
        files.append(str(tmp_path / f"c{k}.wav"))
        sf.write(files[-1], 0.3 * np.sin(2 * np.pi * 300 * t), SR)
    loaded = []

    def loader(model, device=None, dtype=None, max_new_tokens=None):
        loaded.append(dtype)
        return Pipeline(BatchSensitiveLM(), max_new_tokens=max_new_tokens, detect_no_speech=False)

    args = argparse.Namespace(
        model="m",
        batch_sizes="1,2,4",
        dtype="bf16",
        files=files,
        task="asr",
        lang=None,
        device=None,
        max_new_tokens=None,
    )
    assert check.main(args, loader=loader) == 1
    out = capsys.readouterr().out
    assert loaded == ["float32", "bfloat16"]  # the float32 reference is always run
    assert f"{files[0]} (batch 4, float32):" in out and f"{files[0]} (batch 4, bfloat16):" in out
    assert "batch 1 float32: 'clip of 8000 samples'" in out and "batch 4 float32: 'clip of many samples'" in out
    assert f"{files[1]} (batch" not in out  # only the flipped clip is listed
    assert "2 answer(s) differ" in out
    args.batch_sizes = "1,2"
    assert check.main(args, loader=loader) == 0
    assert "every answer matches" in capsys.readouterr().out
