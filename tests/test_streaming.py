"""Streamed training from shard sets (qaudio.training.streaming): readers per process and
worker, temperature mixing, bucketing by seconds, bad-data accounting, exact resume (of the
reader alone, and of a training run killed mid-way), and two DDP processes."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fixtures.ddp import two_process_launch
from fixtures.train_args import quiet_run

from qaudio.audio import SAMPLE_RATE
from qaudio.data import Example
from qaudio.shards import AudioRecord, encode_audio, read_index, write_shards
from qaudio.specs import get_task
from qaudio.training.bad_data import BadDataLog
from qaudio.training.batching import Batch
from qaudio.training.mixing import task_weights
from qaudio.training.streaming import (
    SetCursor,
    ShardStream,
    StreamLoader,
    StreamOptions,
    mixture,
    reader_pieces,
    shard_locations,
)

REPO = Path(__file__).resolve().parent.parent
TASKS = {"asr": get_task("asr"), "aac": get_task("aac")}


def make_set(
    out: Path,
    n: int,
    task: str = "asr",
    seed: int = 0,
    per_shard_bytes: int = 20_000,
    junk_every: int = 0,
    empty_every: int = 0,
    dev: int = 0,
) -> Path:
    """A shard set of ``n`` tones (0.3-2.0 s) with word targets; some junk audio or empty targets if
    asked; with ``dev`` examples of a dev split (ids ``TASK-SEED-dev-I``) if asked."""

    def records(n, split=""):
        rng = np.random.default_rng([seed, 1] if split else seed)
        for i in range(n):
            seconds = float(rng.uniform(0.3, 2.0))
            t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
            data = encode_audio((0.2 * np.sin(2 * np.pi * rng.uniform(150, 900) * t)).astype(np.float32), "flac")
            if junk_every and i % junk_every == 1:
                data = b"this is not audio"
            target = "" if empty_every and i % empty_every == 2 else f"{task} word {i}"
            yield AudioRecord(
                Example(
                    id=f"{task}-{seed}-{split}{i}",
                    audio=f"{i}.flac",
                    duration=round(len(t) / SAMPLE_RATE, 4),
                    task=task,
                    audio_lang="en" if task == "asr" else "unknown",
                    target=target,
                ),
                data,
                "flac",
            )

    write_shards(records(n), out, per_shard_bytes, dev=records(dev, "dev-") if dev else None)
    return out


class RowsOnly:
    """A collator stand-in: the rows' ids, tasks and seconds, no tokenizer (the per-row logic is the Collator's)."""

    def collate(self, rows, bad, position):
        if not rows:
            return Batch(None, bad=bad, position=position)
        return Batch(
            {"rows": len(rows)},
            [it.example.task for it, _, _ in rows],
            [it.example.id for it, _, _ in rows],
            float(sum(it.duration for it, _, _ in rows)),
            bad,
            position,
        )


def stream_of(sets, probs=None, rank=0, world=1, workers=0, batch_size=4, batch_seconds=0.0, bucket=5, seed=0):
    indexes = [read_index(str(s)) for s in sets]
    probs = probs or [1.0 / len(indexes)] * len(indexes)
    opts = StreamOptions(batch_size, batch_seconds, bucket, seed, "tags", 30.0, "skip")
    window = (batch_size or 4) * bucket
    return ShardStream(indexes, probs, TASKS, False, RowsOnly(), opts, rank, world, workers, window)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return {
        "asr": make_set(root / "asr", 60, "asr", seed=1, dev=12),
        "aac": make_set(root / "aac", 20, "aac", seed=2),
        "few": make_set(root / "few", 9, "asr", seed=3, per_shard_bytes=10**9),
    }


def test_recipes_name_shard_sets_and_refuse_a_mix():
    assert shard_locations("shards:/data/a,shards:https://host/b/index.json") == [
        "/data/a",
        "https://host/b/index.json",
    ]
    assert shard_locations("synthetic") is None
    with pytest.raises(ValueError, match="mixes shard sets"):
        shard_locations("shards:/data/a,librispeech")


@pytest.mark.parametrize("n_shards,readers", [(10, 4), (3, 4), (1, 3), (4, 4)])
def test_reader_pieces_cover_each_example_once(n_shards, readers):
    per_shard = 7
    seen = Counter()
    for r in range(readers):
        for shard, stride, phase in reader_pieces(n_shards, r, readers):
            seen.update((shard, o) for o in range(per_shard) if o % stride == phase)
    assert set(seen) == {(k, o) for k in range(n_shards) for o in range(per_shard)}
    assert set(seen.values()) == {1}


@pytest.mark.parametrize("name,world,workers", [("asr", 2, 2), ("few", 2, 2)])
def test_processes_and_workers_read_disjoint_parts_that_make_the_whole_set(sets, name, world, workers):
    index = read_index(str(sets[name]))
    readers = world * workers
    parts = []
    for r in range(readers):
        cursor = SetCursor(index, reader_pieces(len(index.shards), r, readers), 0, (0, r))
        ids = []
        while cursor.epoch == 0:
            ids.append(cursor.next().example.id)
        parts.append(set(ids[:-1]) if cursor.epoch else set(ids))  # the last read began epoch 1
    assert sum(len(p) for p in parts) == index.examples
    assert set().union(*parts) == {
        f"{name if name != 'few' else 'asr'}-{ {'asr': 1, 'few': 3}[name] }-{i}" for i in range(index.examples)
    }


def test_mixing_follows_temperature_across_sets(sets):
    indexes = [read_index(str(sets["asr"])), read_index(str(sets["aac"]))]
    for temperature in (1.0, 3.0):
        expected = task_weights({"0": 60, "1": 20}, ["0", "1"], temperature)
        assert mixture(indexes, ["asr", "aac"], temperature) == pytest.approx([expected["0"], expected["1"]])
    assert mixture(indexes, ["asr", "asr", "aac"], 1.0)[0] == pytest.approx(120 / 140)  # listed twice: oversampled
    with pytest.raises(ValueError, match="no shard set holds examples of task"):
        mixture(indexes, ["asr", "ser"], 1.0)
    probs = mixture(indexes, ["asr", "aac"], 1.0)
    batches = iter(stream_of([sets["asr"], sets["aac"]], probs, bucket=10))
    counts = Counter(t for _ in range(100) for t in next(batches).tasks)
    share = counts["asr"] / sum(counts.values())
    assert abs(share - 0.75) < 0.05, counts  # 400 draws, p = 0.75: 5 points is > 5 standard deviations


def test_buckets_hold_at_most_the_seconds_asked_and_group_similar_lengths(sets):
    from qaudio.shards import read_shard

    index = read_index(str(sets["asr"]))
    lengths = {s.example.id: s.example.duration for k in range(len(index.shards)) for s in read_shard(index, k)}
    batches = iter(stream_of([sets["asr"]], batch_size=0, batch_seconds=6.0, bucket=8))
    sizes = []
    for _ in range(30):
        ids = next(batches).ids
        longest = max(lengths[i] for i in ids)
        assert len(ids) == 1 or len(ids) * longest <= 6.0  # examples x longest clip: the padded seconds
        sizes.append(len(ids))
    assert max(sizes) > min(sizes)  # the count per batch follows the lengths


def test_bad_examples_are_counted_once_with_their_reason(tmp_path):
    root = make_set(tmp_path / "bad", 30, "asr", seed=4, junk_every=5, empty_every=7)
    bad = BadDataLog()
    batches = iter(stream_of([root], batch_size=4, bucket=3))
    seen = set()
    # ids 1, 6, 11, 16, 21, 26 hold junk audio; 2, 9, 16, 23 empty targets (16: found empty before decoding)
    while len(seen) < 30 - 9:  # one epoch of the usable examples
        b = next(batches)
        for item in b.bad:
            bad.record(item)
        seen.update(b.ids or [])
    assert bad.counts == Counter({"unusable audio": 5, "empty target": 4})
    assert not seen & set(bad.skipped)


@pytest.mark.parametrize("workers", [0, 2])
def test_reader_state_resumes_the_exact_batch_sequence(sets, workers):
    def loader():
        return StreamLoader(stream_of([sets["asr"], sets["aac"]], [0.6, 0.4], workers=workers, bucket=3), workers)

    whole = loader()
    it = whole.loader()
    expected = [next(it).ids for _ in range(25)]
    first = loader()
    it = first.loader()
    got = [next(it).ids for _ in range(11)]
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint keeps: plain data
    resumed = loader()
    resumed.load_state_dict(state)
    it = resumed.loader()
    got += [next(it).ids for _ in range(14)]
    assert got == expected


def test_resume_refuses_another_worker_count(sets):
    state = StreamLoader(stream_of([sets["asr"]], workers=2), 2).state_dict()
    with pytest.raises(ValueError, match="--num-workers"):
        StreamLoader(stream_of([sets["asr"]]), 0).load_state_dict(state)


# ---- training runs -----------------------------------------------------------------------------


def _cli(sets, out: Path, *extra: str) -> list[str]:
    return quiet_run(f"shards:{sets['asr']},shards:{sets['aac']}", "asr,aac", out, 4, "--no-eta", *extra)


def _losses(run_dir: Path) -> dict[int, float]:
    from qaudio.training.metrics_log import read_metrics

    return {r["step"]: r["loss"] for r in read_metrics(run_dir, "train")}


@pytest.mark.slow
def test_killed_streamed_run_resumes_with_the_same_losses(sets, tmp_path):
    steps = ("--max-steps", "16", "--save-every", "4", "--num-workers", "2")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qaudio.train", *_cli(sets, killed, *steps)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "step-00000008" / "state.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its loader workers at once
    proc.wait()
    assert not (killed / "model").exists(), "the run finished before the kill: make it longer"
    saved = sorted((killed / "checkpoints").glob("step-*"))[-1]
    assert (saved / "custom_checkpoint_1.pkl").is_file()  # the reader state, beside the TrainState
    outputs = []
    for run in (killed, tmp_path / "whole"):
        done = subprocess.run(
            [sys.executable, "-m", "qaudio.train", *_cli(sets, run, *steps)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout)
    assert f"resuming from {saved}" in outputs[0]
    resumed, whole = _losses(killed), _losses(tmp_path / "whole")
    assert list(resumed) == list(range(1, 17))
    assert resumed == whole  # exact: fp32, the reader state restored from the checkpoint


@pytest.mark.slow
def test_two_streamed_processes_read_different_examples_and_agree_on_weights(sets, tmp_path):
    out = tmp_path / "ddp"
    train_args = _cli(sets, out, "--max-steps", "4", "--save-every", "2", "--log-batches")
    cmd, env = two_process_launch(train_args, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = []
    for r in (0, 1):
        lines = [json.loads(x) for x in (out / f"batches-rank{r}.jsonl").read_text().splitlines()]
        ranks.append(
            {
                "ids": set().union(*[set(x["ids"]) for x in lines if "ids" in x]),
                "weights": [x["final_weights_sha256"] for x in lines if "final_weights_sha256" in x],
            }
        )
    assert ranks[0]["ids"] and ranks[1]["ids"] and not ranks[0]["ids"] & ranks[1]["ids"]  # disjoint shards
    assert ranks[0]["weights"] == ranks[1]["weights"] and len(ranks[0]["weights"]) == 1


# ---- dev examples from the sets' dev splits ----------------------------------------------------


def test_dev_examples_are_the_first_of_each_task_and_the_read_stops_there(sets, monkeypatch):
    from qaudio.training import streaming

    indexes = [read_index(str(sets["aac"])), read_index(str(sets["asr"]))]  # aac: written without a dev split
    assert indexes[0].dev is None and indexes[1].dev is not None and len(indexes[1].dev.shards) > 2
    opened = []
    real = streaming.read_shard
    monkeypatch.setattr(streaming, "read_shard", lambda ix, k, skip=0: opened.append(k) or real(ix, k, skip))
    opts = StreamOptions(4, 0.0, 3, 0, "tags", 30.0, "skip")
    items, blobs = streaming.read_dev(indexes, TASKS, ["aac", "asr"], 3, opts, BadDataLog())
    assert [it.example.id for it in items] == ["asr-1-dev-0", "asr-1-dev-1", "asr-1-dev-2"]
    assert len(blobs) == 3 and all(b[:4] == b"fLaC" for b in blobs)
    assert max(opened) < len(indexes[1].dev.shards) - 1  # the last dev shard was never opened


def _train_cfg(sets, out: Path, **overrides):
    from qaudio.training.config import TrainConfig

    values = {
        "model": "tiny",
        "recipes": f"shards:{sets['asr']},shards:{sets['aac']}",
        "tasks": "asr,aac",
        "output_dir": str(out),
        "precision": "fp32",
        "threads": 1,
        "batch_size": 4,
        "max_steps": 2,
        "max_dev_examples": 6,
        "log_every": 1,
        "eval_every": 0,
        "save_every": 100,
        "progress": False,
        "tensorboard": False,
        "plot": False,
        "eta": False,
    }
    return TrainConfig(**{**values, **overrides})


def test_a_streamed_run_logs_a_dev_loss_from_the_dev_shards_and_notes_the_sets_without(sets, tmp_path, capsys):
    from qaudio.train import train
    from qaudio.training.metrics_log import read_metrics

    devs = []
    for name in ("a", "b"):
        train(_train_cfg(sets, tmp_path / name, max_steps=1))
        devs.append({r["step"]: r["task_loss"] for r in read_metrics(tmp_path / name, "dev")})
    out = capsys.readouterr().out
    assert f"no dev split in shard set(s) {sets['aac']}" in out and "--dev-split" in out
    assert "6 dev examples" in out  # asr's first 6; the aac set has none
    assert list(devs[0]) == [0, 1] and set(devs[0][0]) == {"asr"}
    assert devs[0][0]["asr"] != devs[0][1]["asr"]  # the model trained in between
    assert devs[0] == devs[1]  # the same examples, in the same order: the same losses


def test_dev_split_none_reads_no_dev_shards(sets, tmp_path, capsys):
    from qaudio.train import train
    from qaudio.training.metrics_log import read_metrics

    train(_train_cfg(sets, tmp_path / "run", dev_split="none", max_steps=1))
    assert not read_metrics(tmp_path / "run", "dev")
    assert "0 dev examples" in capsys.readouterr().out


def test_the_encoder_cache_is_refused_with_the_reason_and_the_fix(sets, tmp_path):
    from qaudio.train import train

    with pytest.raises(ValueError, match="computed before the first step from a list of every example") as e:
        train(_train_cfg(sets, tmp_path / "run", cache_encoder=str(tmp_path / "cache")))
    assert "Drop --cache-encoder" in str(e.value) and "--recipes RECIPE:ROOT --cache-encoder DIR" in str(e.value)
    assert not (tmp_path / "cache").exists()


def test_mixing_by_pair_or_pinned_weights_is_refused_for_streamed_sets_with_the_fix(sets, tmp_path):
    from qaudio.train import train

    with pytest.raises(ValueError, match="--mix-by pair needs the examples listed up front") as e:
        train(_train_cfg(sets, tmp_path / "run", mix_by="pair"))
    assert "one shard set per language pair" in str(e.value)
    with pytest.raises(ValueError, match="--mix-weights pins tasks or language pairs of examples listed up front") as e:
        train(_train_cfg(sets, tmp_path / "run", mix_weights="asr=0.5"))
    assert "listing its task twice in --tasks" in str(e.value)
