"""The training loop on the tiny preset and the tiny synthetic corpus: loss masking, bad data,
non-finite losses, the feature cache, kill-and-resume equality and 2-process DDP."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
import torch
from fixtures.ddp import two_process_launch
from fixtures.train_args import quiet_run

from qaudio.data import read_manifest
from qaudio.specs import registry
from qaudio.train import Collator, TrainingAborted, build_model, train
from qaudio.training.bad_data import BadDataError, BadDataLog
from qaudio.training.config import TrainConfig
from qaudio.training.corpus import load_items, parse_recipes, tokenizer_texts
from qaudio.training.feature_cache import FeatureCache, audio_key, encoder_identity, fill_cache
from qaudio.training.metrics_log import read_metrics
from qaudio.training.summary import describe, read_summary

REPO = Path(__file__).resolve().parent.parent


def tiny_config(corpus: Path, out: Path, **overrides) -> TrainConfig:
    values = {
        "model": "tiny",
        "recipes": f"synthetic:{corpus}",
        "tasks": "asr,aac,aqa",
        "output_dir": str(out),
        "precision": "fp32",
        "threads": 1,
        "batch_size": 8,
        "max_steps": 6,
        "log_every": 1,
        "eval_every": 0,
        "save_every": 100,
        "progress": False,
        "tensorboard": False,
        "plot": False,
        "eta": False,
    }
    values.update(overrides)
    return TrainConfig(**values)


def tiny_model_and_items(corpus: Path, seed: int = 0):
    cfg = tiny_config(corpus, Path("unused"), seed=seed)
    items = load_items(parse_recipes(cfg.recipes), "train", registry("tasks"), "tags", BadDataLog(), keep_all=True)
    return build_model(cfg, tokenizer_texts(items, "tags"), None), items


def train_losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir, "train")}


# ---- collation ---------------------------------------------------------------------------------


def test_collated_batch_trains_on_the_target_only(corpus):
    model, items = tiny_model_and_items(corpus)
    by_task = {}
    for i, it in enumerate(items):
        by_task.setdefault(it.example.task, i)
    chosen = [by_task[t] for t in ("asr", "aqa", "aac", "ser")]
    collator = Collator(model.processor, items, "tags", seed=0, max_seconds=30.0)
    batch = collator([(-1, i) for i in chosen])
    ids, labels, mask = batch.inputs["input_ids"], batch.inputs["labels"], batch.inputs["attention_mask"]
    assert len({int(m.sum()) for m in mask}) > 1  # rows of different lengths: padding present
    tok = model.processor.tokenizer
    for row, i in enumerate(chosen):
        item = items[i]
        target = item.task.targets(item.example)[0]
        kept = labels[row] != -100
        # Exactly the target and the end token are trained on: not the audio slots, the prompt or padding.
        assert tok.decode(labels[row][kept]) == target + tok.eos_token
        assert torch.equal(labels[row][kept], ids[row][kept])
        assert not kept[mask[row] == 0].any()
        assert not kept[ids[row] == model.token_ids.audio].any()
        prompt = tok.decode(ids[row][mask[row] == 1])
        assert item.task.prompt(item.example.request(item.task), "tags") in prompt and prompt.index(
            target
        ) > prompt.index("<|audio_eos|>")
    # Padding changes nothing: each example's loss in the batch equals its loss alone.
    with torch.no_grad():
        together = model(**batch.inputs).loss_sum
        alone = torch.cat([model(**collator([(-1, i)]).inputs).loss_sum for i in chosen])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


# ---- bad data ------------------------------------------------------------------------------------


def write_bad_corpus(corpus: Path, root: Path) -> dict[str, str]:
    """A manifest corpus of good asr examples plus a corrupt file, a missing file and an empty target."""
    root.mkdir(parents=True)
    good = [ex for ex in read_manifest(corpus / "train.jsonl") if ex.task == "asr"][:10]
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
    samples, sr = sf.read(good[0].audio)
    sf.write(root / "silent.wav", samples * 0, sr)
    bad = {
        "corrupt": str(root / "corrupt.wav"),
        "missing": str(root / "nowhere.wav"),
        "empty": good[1].audio,
        "silent": str(root / "silent.wav"),
    }
    lines = [ex.to_json() for ex in good]
    for name, path in bad.items():
        target = "" if name == "empty" else "some words"
        lines.append(json.dumps({"id": f"bad-{name}", "audio": path, "duration": 1.0, "task": "asr", "target": target}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copy(corpus / "dev.jsonl", root / "dev.jsonl")
    (root / "dev.jsonl").write_text(
        "".join(ex.to_json() + "\n" for ex in read_manifest(corpus / "dev.jsonl") if ex.task == "asr")
    )
    return bad


def test_bad_data_is_skipped_and_counted_and_strict_stops(corpus, tmp_path, capsys):
    bad = write_bad_corpus(corpus, tmp_path / "bad")
    cfg = tiny_config(corpus, tmp_path / "run", recipes=f"manifest:{tmp_path / 'bad'}", tasks="asr", max_steps=3)
    train(cfg)
    # The same counts when the bad audio turns up while filling the feature cache instead.
    cached = tiny_config(
        corpus,
        tmp_path / "cached",
        recipes=f"manifest:{tmp_path / 'bad'}",
        tasks="asr",
        max_steps=1,
        cache_encoder=str(tmp_path / "cache"),
    )
    train(cached)
    assert (
        read_metrics(tmp_path / "cached", "end")[-1]["bad_data"]
        == read_metrics(tmp_path / "run", "end")[-1]["bad_data"]
    )
    end = read_metrics(tmp_path / "run", "end")[-1]
    assert end["bad_data"] == {"missing file": 1, "empty target": 1, "unusable audio": 2}
    assert end["step"] == 3 and (tmp_path / "run" / "model" / "model.safetensors").is_file()
    out = capsys.readouterr().out
    assert "bad data: 4 example(s) skipped" in out and bad["corrupt"] in out and "silent" in out
    with pytest.raises(ValueError, match=r"cannot resume .*batch_size: 8 -> 4"):  # same run dir, other data order
        train(
            tiny_config(
                corpus, tmp_path / "run", recipes=f"manifest:{tmp_path / 'bad'}", tasks="asr", max_steps=3, batch_size=4
            )
        )
    with pytest.raises(BadDataError, match="--strict") as err:
        train(
            tiny_config(
                corpus,
                tmp_path / "strict",
                recipes=f"manifest:{tmp_path / 'bad'}",
                tasks="asr",
                max_steps=3,
                strict=True,
            )
        )
    assert any(path in str(err.value) for path in bad.values())


def test_non_finite_losses_skip_steps_then_abort_keeping_the_checkpoint(corpus, tmp_path, monkeypatch):
    from qaudio.model.audio_lm import AudioLM
    from qaudio.training.watchdog import NumericsWatchdog

    real_forward, real_replay = AudioLM.forward, NumericsWatchdog.loss_of
    calls = Counter()

    def flaky(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        if calls["replaying"]:  # the watchdog's replay of a bad step: not a training call
            return out
        calls["n"] += 1
        if calls["n"] == 2 or calls["n"] >= 5:  # one bad step, then good ones, then nothing but NaN
            out.loss_sum = out.loss_sum * float("nan")  # what the loop divides
        return out

    def replay(self, model, batch):
        calls["replaying"] = 1
        try:
            return real_replay(self, model, batch)
        finally:
            calls["replaying"] = 0

    monkeypatch.setattr(AudioLM, "forward", flaky)
    monkeypatch.setattr(NumericsWatchdog, "loss_of", replay)
    run = tmp_path / "run"
    with pytest.raises(TrainingAborted, match=r"3 non-finite losses in a row.*step-00000002"):
        train(tiny_config(corpus, run, dev_split="none", max_steps=10, save_every=2, max_bad_steps=3))
    skips = read_metrics(run, "skip")
    assert len(skips) == 4 and max(train_losses(run)) == 3  # steps 1-3 trained, one skip between
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000002"]
    # Each bad step was replayed and written down with its clips (the NaN injected here is not replayed).
    findings = [json.loads(line) for line in (run / "numerics-rank0.jsonl").read_text().splitlines()]
    assert len(findings) == 4 and all(f["ids"] and all(f["audio"]) for f in findings)


# ---- the feature cache -----------------------------------------------------------------------------


def test_loss_from_cached_features_equals_loss_from_the_live_encoder(corpus, tmp_path):
    model, items = tiny_model_and_items(corpus)
    chosen = list(range(0, len(items), 3))[:12]
    cache = FeatureCache(tmp_path / "cache", encoder_identity(model, model.processor, "fp32"), "fp32")
    todo = {audio_key(items[i].example.audio): items[i] for i in chosen}
    assert fill_cache(cache, model.processor, model, todo, tag="r0") == []
    keys = [audio_key(it.example.audio) for it in items]
    live = Collator(model.processor, items, "tags", seed=0, max_seconds=30.0)
    cached = Collator(model.processor, items, "tags", seed=0, max_seconds=30.0, cache=cache, keys=keys)
    request = [(7, i) for i in chosen]
    with torch.no_grad():
        live_loss = model(**live(request).inputs).loss_sum
        cached_loss = model(**cached(request).inputs).loss_sum
    torch.testing.assert_close(cached_loss, live_loss, rtol=1e-5, atol=1e-5)
    # Another encoder (other random weights) never reads these entries.
    other, _ = tiny_model_and_items(corpus, seed=1)
    assert FeatureCache(tmp_path / "cache", encoder_identity(other, other.processor, "fp32"), "fp32").missing(
        todo
    ) == list(todo)


def test_a_cache_entry_does_not_depend_on_the_clips_encoded_with_it(corpus, tmp_path):
    # A cache filled in two goes must hold the numbers a cache filled at once holds: training
    # amplifies the encoder's 1e-5 batch-shape noise into different models.
    model, items = tiny_model_and_items(corpus)
    identity = encoder_identity(model, model.processor, "fp32")
    by_key = {audio_key(it.example.audio): it for it in items}
    keys = sorted(by_key, key=lambda k: by_key[k].duration)
    fills = {"at once": keys, "every other clip": keys[::2], "the clips between": keys[1::2], "alone": keys[-1:]}
    entries = {}
    for name, chosen in fills.items():
        cache = FeatureCache(tmp_path / name, identity, "fp32")
        assert fill_cache(cache, model.processor, model, {k: by_key[k] for k in chosen}, tag="r0") == []
        entries[name] = {k: cache.get(k) for k in chosen}
    reference = entries.pop("at once")
    changed = {
        name: [k[:8] for k, got in found.items() if not torch.equal(got, reference[k])]
        for name, found in entries.items()
    }
    assert changed == {name: [] for name in entries}


def test_training_from_the_cache_matches_live_training(corpus, tmp_path):
    train(tiny_config(corpus, tmp_path / "live", max_steps=3))
    cfg = tiny_config(
        corpus, tmp_path / "cached", max_steps=3, cache_encoder=str(tmp_path / "cache"), cache_dtype="fp32"
    )
    train(cfg)
    shards = sorted((tmp_path / "cache").rglob("shard-*.safetensors"))
    assert shards
    import yaml

    saved = yaml.safe_load((tmp_path / "cached" / "checkpoints" / "step-00000003" / "train_config.yaml").read_text())
    assert TrainConfig.from_dict(saved) == cfg  # the resolved config travels with every checkpoint
    live, cached = train_losses(tmp_path / "live"), train_losses(tmp_path / "cached")
    assert list(live) == [1, 2, 3] and live == pytest.approx(cached, rel=1e-4)
    shutil.rmtree(tmp_path / "cached")
    train(cfg)  # a second run reuses the cache: no new shard
    assert sorted((tmp_path / "cache").rglob("shard-*.safetensors")) == shards


# ---- kill and resume; two processes ------------------------------------------------------------------


def _cli(corpus: Path, out: Path, *extra: str) -> list[str]:
    return quiet_run(f"synthetic:{corpus}", "asr,aac,aqa", out, 8, *extra)


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_losses(corpus, tmp_path):
    steps, save = 40, 4
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qaudio.train",
            *_cli(corpus, killed, "--max-steps", str(steps), "--save-every", str(save)),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "step-00000004" / "state.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists(), "the run finished before the kill: make it longer"
    resumed_from = max(int(p.name.split("-")[1]) for p in (killed / "checkpoints").glob("step-*"))
    assert resumed_from < steps
    # Resume in this process (same code, same thread count: bit-identical arithmetic).
    train(tiny_config(corpus, killed, max_steps=steps, save_every=save))
    train(tiny_config(corpus, tmp_path / "whole", max_steps=steps, save_every=save))
    resumed, whole = train_losses(killed), train_losses(tmp_path / "whole")
    assert list(resumed) == list(range(1, steps + 1))
    assert resumed == whole  # exact: fp32, deterministic kernels, the same data order
    # The summary counts what the model saw over both runs, not only after the resume.
    summaries = [read_summary(run / "model") for run in (killed, tmp_path / "whole")]
    assert summaries[0]["examples_seen"] == summaries[1]["examples_seen"] > steps
    assert summaries[0]["steps"] == summaries[1]["steps"] == steps


def _ddp_command(corpus: Path, out: Path, *extra: str) -> tuple[list[str], dict]:
    """Two real CPU processes under DDP training ``corpus``'s asr examples into ``out``."""
    return two_process_launch(_cli(corpus, out, "--tasks", "asr", "--batch-size", "4", *extra))


# One 2-process run serves two tests: what each process saw, and the uninterrupted losses a killed
# and resumed run must reproduce (each launch of two processes costs ~20 s on 2 cores).
DDP_RUN = ("--max-steps", "12", "--save-every", "2", "--log-batches")


@pytest.fixture(scope="module")
def two_process_run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "whole"
    cmd, env = _ddp_command(corpus, out, *DDP_RUN)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.slow
def test_two_processes_train_on_different_data_and_end_with_identical_weights(two_process_run):
    out = two_process_run
    ranks = []
    for r in (0, 1):
        lines = [json.loads(x) for x in (out / f"batches-rank{r}.jsonl").read_text().splitlines()]
        ranks.append(
            {
                "ids": [set(x["ids"]) for x in lines if "ids" in x],
                "weights": [x["final_weights_sha256"] for x in lines if "final_weights_sha256" in x],
            }
        )
    assert len(ranks[0]["ids"]) == len(ranks[1]["ids"]) == 12
    for a, b in zip(ranks[0]["ids"], ranks[1]["ids"], strict=True):
        assert a and b and not a & b  # each step, the two processes saw different examples
    # (one task of 24 clips in micro-batches of 4: a window is one pass, dealt out to the two processes)
    assert ranks[0]["weights"] == ranks[1]["weights"] and len(ranks[0]["weights"]) == 1
    assert read_metrics(out, "end")[-1]["processes"] == 2
    assert (out / "checkpoints" / "step-00000012" / "random_states_1.pkl").is_file()  # accelerate's, per process


@pytest.mark.slow
def test_two_processes_killed_mid_run_resume_with_the_same_losses(corpus, two_process_run, tmp_path):
    killed = tmp_path / "killed"
    cmd, env = _ddp_command(corpus, killed, *DDP_RUN)
    # Its own session: SIGKILL reaches the launcher and both training processes at once, as a lost machine would.
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.time() + 600  # a guard against a hang, generous for a busy machine
    while not (killed / "checkpoints" / "step-00000004" / "state.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint within 600 s"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists(), "the run finished before the kill: make it longer"
    resumed = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    losses = train_losses(killed)
    assert list(losses) == list(range(1, 13))
    assert losses == train_losses(two_process_run)  # exact: fp32, the same data order, RNGs restored per process


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_stops_with_the_reason_and_the_fix(corpus, tmp_path):
    # accelerate 1.15 shards on GPU-like devices only (its FSDP plugin finds no device on a CPU
    # machine); qaudio says so before anything is built, instead of accelerate's traceback.
    cmd, env = _ddp_command(corpus, tmp_path / "fsdp", "--max-steps", "2")
    cmd[cmd.index("--multi_gpu")] = "--use_fsdp"
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "qaudio train: error: FSDP was asked for (accelerate launch --use_fsdp) on CPU processes" in done.stderr
    assert "ACCELERATE_USE_CPU=true accelerate launch --multi_gpu" in done.stderr
    assert not (tmp_path / "fsdp" / "checkpoints").exists()


def test_fsdp_asked_on_a_cpu_machine_is_refused_before_accelerate_starts(monkeypatch):
    from qaudio.training.setup import make_accelerator

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    with pytest.raises(ValueError, match=r"accelerate shards on GPUs .* only.*without --use_fsdp"):
        make_accelerator(TrainConfig(precision="fp32"))


def test_max_minutes_stops_at_the_deadline_when_the_machine_slows_down(corpus, tmp_path, monkeypatch):
    import qaudio.training.plan as plan_module

    # The probe claims steps are instant, so the planned schedule is far longer than the budget;
    # the deadline (110% of 2.4 s) must end the run early, with a dev pass and a saved model.
    monkeypatch.setattr(plan_module, "probe_step_seconds", lambda *a, **k: 1e-4)
    cfg = tiny_config(corpus, tmp_path / "run", max_steps=0, max_minutes=0.04, log_every=2, eval_every=0)
    final = train(cfg)
    (stop,) = read_metrics(tmp_path / "run", "deadline")
    assert stop["step"] < stop["planned_steps"]
    (end,) = read_metrics(tmp_path / "run", "end")
    assert end["step"] == stop["step"] and end["dev_end"]
    assert (final / "config.json").is_file()
    summary = read_summary(final)  # a report of this model must say the schedule was cut short
    assert summary["stopped_early"] and summary["steps"] == stop["step"] < summary["planned_steps"]
    assert "STOPPED EARLY" in describe(summary)


def test_the_model_directory_records_what_training_did(corpus, tmp_path):
    cfg = tiny_config(corpus, tmp_path / "run", max_steps=4, eval_every=2, log_every=1)
    final = train(cfg)
    summary = read_summary(final)
    trained = sum(sum(r["task_examples"].values()) for r in read_metrics(tmp_path / "run", "train"))
    assert summary["steps"] == summary["planned_steps"] == 4 and not summary["stopped_early"]
    assert summary["examples_seen"] == trained > 0
    assert summary["audio_seconds_seen"] > 0 and summary["precision"] == "fp32" and summary["processes"] == 1
    assert (summary["mix_by"], summary["temperature"], summary["lr"]) == ("task", cfg.temperature, cfg.lr)
    assert f"mixed by task at T={cfg.temperature:g}, peak lr {cfg.lr:g}" in describe(summary)
    assert "pinned" not in describe(summary)
    assert "T=2 (asr en=0.3 pinned), peak" in describe({**summary, "temperature": 2.0, "mix_weights": "asr en=0.3"})
    # dev loss at steps 0, 2 and 4 for each task: the learning curve the report plots
    assert {t: [p[0] for p in pts] for t, pts in summary["learning_curve"].items()} == {
        t: [0, 2, 4] for t in ("aac", "aqa", "asr")
    }
    assert "trained 4 optimizer steps" in describe(summary)


def test_the_eta_says_when_the_machine_is_slower_than_the_run_was_sized_for():
    from qaudio.training.plan import eta_message

    cfg = TrainConfig(max_steps=1000, eval_every=500, expected_step_s=0.3)
    quick = eta_message(1000, 0.31, 10.0, cfg)
    assert "about 5.8 min" in quick and "slower" not in quick  # 1000 x 0.31 s + 4 dev passes x 10 s
    slow = eta_message(1000, 0.9, 10.0, cfg)
    assert "3.0x slower" in slow and "the same 1000 steps" in slow
