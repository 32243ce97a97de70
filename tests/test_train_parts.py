"""Training parts that need no model: config/CLI/YAML, task mixing, length grouping, bad-data
accounting, word-boundary chunking, the learning-rate schedule, checkpoint files, cache keys."""

import argparse
import itertools
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from qaudio.data import Example
from qaudio.specs import get_task
from qaudio.training import checkpoint as ckpt
from qaudio.training.bad_data import BadDataError, BadDataLog, BadItem
from qaudio.training.budget import steps_for_budget
from qaudio.training.config import TrainConfig, add_arguments, config_from_args
from qaudio.training.corpus import Item, chunk_by_words, fit_to_window, parse_recipes, parse_tasks
from qaudio.training.feature_cache import FeatureCache, audio_key
from qaudio.training.mixing import MixtureSampler, length_grouped_batches, task_weights
from qaudio.training.optim import lr_factor
from qaudio.training.setup import mixture_sampler


def parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


# ---- config ----------------------------------------------------------------------------------


def test_every_field_has_a_flag_with_help_and_defaults_match():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {a.dest: a for a in parser._actions}
    for name, f in TrainConfig.__dataclass_fields__.items():
        assert name in flags, name
        assert f.metadata["help"] and len(f.metadata["help"]) > 10, name
    assert parse([]) == TrainConfig()


def test_yaml_overrides_and_flags_override_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.0005\nmax-steps: 7\ntasks: asr,aac\nstrict: true\n")
    cfg = parse(["--config", str(path), "--max-steps", "9", "--no-progress"])
    assert (cfg.lr, cfg.max_steps, cfg.tasks, cfg.strict, cfg.progress) == (0.0005, 9, "asr,aac", True, False)
    path.write_text("learning_rate: 1\n")
    with pytest.raises(ValueError, match=r"unknown training option.*learning_rate"):
        parse(["--config", str(path)])


def test_bad_values_name_the_flag():
    with pytest.raises(ValueError, match="--lr must be > 0"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="--precision is 'fp8'"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="--batch-size 0 needs --batch-seconds"):
        TrainConfig(batch_size=0)


def test_recipe_and_task_specs(monkeypatch):
    monkeypatch.setenv("QAUDIO_DATA", "/corpora")
    specs = parse_recipes("synthetic,librispeech:/data/LS@train-clean-100/dev-clean", "train", "dev")
    assert [str(s) for s in specs] == [
        "synthetic:/corpora/synthetic@train/dev",
        "librispeech:/data/LS@train-clean-100/dev-clean",
    ]
    assert parse_tasks("asr,aac,asr") == ["asr", "aac", "asr"]
    with pytest.raises(ValueError, match="cannot be combined"):
        parse_tasks("all,asr")


# ---- mixing and bucketing ----------------------------------------------------------------------


def test_task_weights_temperature_and_repeats():
    sizes = {"asr": 900, "aac": 100}
    assert task_weights(sizes, ["asr", "aac"], 1.0) == pytest.approx({"asr": 0.9, "aac": 0.1})
    w = task_weights(sizes, ["asr", "aac"], 2.0)  # sqrt sizes: 30 vs 10
    assert w == pytest.approx({"asr": 0.75, "aac": 0.25})
    w = task_weights(sizes, ["asr", "aac", "aac"], 1.0)  # listed twice: weight doubled
    assert w["aac"] == pytest.approx(200 / 1100)
    with pytest.raises(ValueError, match="ser have no training examples"):
        task_weights(sizes, ["asr", "ser"], 1.0)


def _pair_items(counts):
    """Stand-in items: ``counts`` maps (task, audio language, text language) to a number of examples."""
    return [
        SimpleNamespace(example=SimpleNamespace(task=t, audio_lang=a, text_lang=x), duration=1.0)
        for (t, a, x), n in counts.items()
        for _ in range(n)
    ]


def test_mixing_by_language_pair_lifts_small_languages_and_keeps_task_repeats():
    items = _pair_items({("asr", "en", "en"): 900, ("asr", "de", "de"): 100, ("aac", "unknown", "en"): 100})
    one_process = SimpleNamespace(process_index=0, num_processes=1)
    by_task = mixture_sampler(items, ["asr", "asr", "aac"], 2.0, TrainConfig(), one_process)
    assert by_task.weights == pytest.approx(
        {"asr": 2 * 1000**0.5 / (2 * 1000**0.5 + 10), "aac": 10 / (2 * 1000**0.5 + 10)}
    )
    by_pair = mixture_sampler(items, ["asr", "asr", "aac"], 2.0, TrainConfig(mix_by="pair"), one_process)
    # sqrt sizes 30, 10, 10; asr listed twice doubles both of its pairs; aac has one pair and keeps its name
    assert by_pair.weights == pytest.approx({"asr en": 60 / 90, "asr de": 20 / 90, "aac": 10 / 90})
    assert by_pair.task_indices["asr de"] == list(range(900, 1000))
    # at T = 1 both units give every task the same share
    flat = mixture_sampler(items, ["asr", "aac"], 1.0, TrainConfig(mix_by="pair"), one_process).weights
    assert flat["asr en"] + flat["asr de"] == pytest.approx(1000 / 1100)
    with pytest.raises(ValueError, match="--mix-by is 'language'; valid choices: task, pair"):
        TrainConfig(mix_by="language")


def test_pinned_mix_weights_hold_while_the_other_groups_share_the_rest_by_temperature():
    items = _pair_items({("asr", "en", "en"): 900, ("asr", "de", "de"): 100, ("aac", "unknown", "en"): 100})
    one_process = SimpleNamespace(process_index=0, num_processes=1)
    cfg = TrainConfig(mix_by="pair", mix_weights="asr en = 0.5")
    weights = mixture_sampler(items, ["asr", "asr", "aac"], 2.0, cfg, one_process).weights
    # unpinned: asr de 20, aac 10 (sqrt sizes, asr listed twice) share the other half 2:1
    assert weights == pytest.approx({"asr en": 0.5, "asr de": 1 / 3, "aac": 1 / 6})
    # more English examples move a temperature share, never a pinned one
    more = _pair_items({("asr", "en", "en"): 3600, ("asr", "de", "de"): 100, ("aac", "unknown", "en"): 100})
    assert mixture_sampler(more, ["asr", "asr", "aac"], 2.0, cfg, one_process).weights == pytest.approx(weights)
    every = TrainConfig(mix_by="pair", mix_weights="asr en=0.6,asr de=0.3,aac=0.1")
    assert mixture_sampler(items, ["asr", "aac"], 1.0, every, one_process).weights == pytest.approx(
        {"asr en": 0.6, "asr de": 0.3, "aac": 0.1}
    )
    with pytest.raises(
        ValueError, match=r"names 'asr fr', not a mixing group of this run; the groups are: aac, asr de"
    ):
        mixture_sampler(items, ["asr", "aac"], 1.0, TrainConfig(mix_by="pair", mix_weights="asr fr=0.1"), one_process)
    with pytest.raises(ValueError, match=r"summing to 1\.1, leaving nothing for aac"):
        mixture_sampler(
            items, ["asr", "aac"], 1.0, TrainConfig(mix_by="pair", mix_weights="asr en=.8,asr de=.3"), one_process
        )
    with pytest.raises(ValueError, match=r"pins every group, so its probabilities must sum to 1; they sum to 0\.9"):
        mixture_sampler(items, ["asr", "aac"], 1.0, TrainConfig(mix_weights="asr=0.5,aac=0.4"), one_process)
    # the form is checked when the options are read, before any data is
    for bad in ("asr en", "asr en=1.5", "=0.2", "asr=x"):
        with pytest.raises(ValueError, match="is not GROUP=PROBABILITY"):
            TrainConfig(mix_weights=bad)
    with pytest.raises(ValueError, match="names 'asr' twice"):
        TrainConfig(mix_weights="asr=0.2,asr=0.3")
    assert parse(["--mix-weights", "asr en=0.28,ser=0.08"]).mix_weights == "asr en=0.28,ser=0.08"


def _sampler(rank=0, world=1, batch_size=8, batch_seconds=0.0, seed=3):
    rng = np.random.default_rng(0)
    durations = rng.uniform(1, 10, size=600)
    task_indices = {"asr": list(range(0, 400)), "aac": list(range(400, 550)), "ser": list(range(550, 600))}
    weights = task_weights({t: len(v) for t, v in task_indices.items()}, ["asr", "aac", "ser", "ser"], 1.0)
    return MixtureSampler(task_indices, weights, durations, batch_size, batch_seconds, 10, seed, rank, world), weights


def test_mixing_proportions_follow_the_weights():
    sampler, weights = _sampler()
    task_of = {i: t for t, idx in sampler.task_indices.items() for i in idx}
    counts = Counter()
    for n, batch in enumerate(sampler):
        counts.update(task_of[i] for i in batch)
        if n == 1500:
            break
    total = sum(counts.values())
    for t, w in weights.items():
        assert counts[t] / total == pytest.approx(w, abs=0.02), (t, counts)
    assert weights["ser"] == pytest.approx(100 / 650)  # 50 examples, listed twice


def test_each_task_pass_draws_every_example_once():
    sampler, _ = _sampler()
    seen = Counter()
    for batch in sampler:
        seen.update(i for i in batch if i >= 550)  # ser examples
        if sum(seen.values()) >= 3000:  # about 60 passes over the 50 ser examples
            break
    # Passes without replacement keep the counts level (independent draws would spread by about
    # +-3 sqrt(60)); only the last, partial pass and the window shuffle make them differ.
    assert set(seen) == set(range(550, 600)) and max(seen.values()) - min(seen.values()) <= 2


def test_length_grouping_reduces_padding_and_respects_caps():
    durations = np.random.default_rng(1).uniform(1, 20, size=400)
    order = np.arange(400)
    batches = length_grouped_batches(order, durations, 16, 0.0)
    assert sorted(i for b in batches for i in b) == list(range(400)) and max(map(len, batches)) == 16
    padded = sum(len(b) * durations[b].max() for b in batches)
    random_batches = [order[i : i + 16] for i in range(0, 400, 16)]
    padded_random = sum(len(b) * durations[b].max() for b in random_batches)
    assert padded < 0.75 * padded_random
    capped = length_grouped_batches(order, durations, 0, 60.0)
    assert all(len(b) * durations[b].max() <= 60.0 or len(b) == 1 for b in capped)


def test_processes_split_one_stream_and_resume_skips_exactly():
    one, _ = _sampler()
    r0, _ = _sampler(rank=0, world=2)
    r1, _ = _sampler(rank=1, world=2)
    head = list(itertools.islice(one, 20))
    it0, it1 = iter(r0), iter(r1)
    interleaved = [
        x
        for pair in zip(*(([next(it0) for _ in range(10)]), [next(it1) for _ in range(10)]), strict=True)
        for x in pair
    ]
    assert interleaved == head
    resumed = list(itertools.islice(r1.iterate(start=10), 5))
    assert resumed == head[11:20:2]
    assert list(itertools.islice(_sampler(seed=4)[0], 20)) != head


# ---- bad data ----------------------------------------------------------------------------------


def test_bad_data_counts_once_per_example_and_strict_raises():
    log = BadDataLog()
    for i in range(8):
        log.record(BadItem("unusable audio", f"ex{i % 6}", f"/a/{i}.wav", "cannot decode"))
    log.record(BadItem("empty target", "t1", "/a/t.wav", "empty", "synthetic train, example 4"))
    assert log.counts == Counter({"unusable audio": 6, "empty target": 1})
    text = log.summary()
    assert "7 example(s) skipped" in text and "... and 1 more" in text and "synthetic train, example 4" in text
    other = BadDataLog()
    other.record(BadItem("missing file", "m", "/x.wav", "not found"))
    log.merge(other.state_dict())
    assert log.total == 8
    with pytest.raises(BadDataError, match=r"'t1' \(synthetic train, example 4\), audio /a/t.wav"):
        BadDataLog(strict=True).record(BadItem("empty target", "t1", "/a/t.wav", "empty", "synthetic train, example 4"))


def test_long_examples_are_chunked_at_word_boundaries_or_skipped_with_a_count():
    words = [[f"w{i}", i * 1.0 + 0.1, i * 1.0 + 0.8] for i in range(50)]  # 50 s of one word a second
    ex = Example(id="long", audio="x.wav", duration=50.0, task="asr", target="", words=words)
    pieces = chunk_by_words(ex, 30.0)
    assert len(pieces) == 2 and all(p.duration <= 30.0 for p in pieces)
    assert " ".join(p.target for p in pieces) == " ".join(w for w, _, _ in words)
    assert pieces[1].words[0][1] >= 0 and pieces[1].meta["segment"][0] == pytest.approx(29.95)
    bad = BadDataLog()
    asr, aac = get_task("asr"), get_task("aac")
    cap = Example(id="cap", audio="c.wav", duration=40.0, task="aac", audio_lang="unknown", target="a dog")
    items = [Item(ex, asr, "s"), Item(cap, aac, "s")]
    assert [len(fit_to_window(items, 30.0, "skip", BadDataLog()))] == [0]
    kept = fit_to_window(items, 30.0, "chunk", bad)
    assert [i.example.id for i in kept] == ["long#chunk0", "long#chunk1"]
    assert bad.counts == Counter({"too long": 1}) and "cannot be chunked" in bad.summary()


# ---- schedule ----------------------------------------------------------------------------------


def test_warmup_then_cosine_to_min():
    f = [lr_factor(s, 100, 5, "cosine", 0.1) for s in range(100)]
    assert f[0] == pytest.approx(1 / 6) and f[4] == pytest.approx(5 / 6) and f[5] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(f[5:]))
    assert lr_factor(100, 100, 5, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(52, 100, 5, "linear", 0.0) == pytest.approx(0.5, abs=0.01)


def test_time_budget_leaves_room_for_dev_passes():
    # 600 s at 0.5 s a step, a 10 s dev pass every 200 steps and at the end
    steps = steps_for_budget(600, 0.5, 10.0, 200)
    passes = 1 + steps // 200
    assert steps * 0.5 + passes * 10.0 <= 600 < (steps + 1) * 0.5 + passes * 10.0 + 10.0
    assert steps_for_budget(600, 0.5, 0.0, 0) == 1200


# ---- checkpoint files ----------------------------------------------------------------------------


def test_checkpoints_are_atomic_and_only_the_last_k_are_kept(tmp_path):
    model = torch.nn.Linear(3, 2)
    for step in (10, 20, 30):
        staging = ckpt.staging_dir(tmp_path, step)
        ckpt.save_trainable(model, ["weight"], staging / ckpt.TRAINABLE_FILE)
        ckpt.commit(staging, {"step": step}, keep=2)
    (tmp_path / "checkpoints" / ".tmp-step-00000040").mkdir()  # a save cut by a kill
    (tmp_path / "checkpoints" / "step-00000050").mkdir()  # no state.json: incomplete
    assert [p.name for p in ckpt.complete_checkpoints(tmp_path)] == ["step-00000020", "step-00000030"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000030"
    assert [p.name for p in ckpt.remove_stale_staging(tmp_path)] == [".tmp-step-00000040"]
    other = torch.nn.Linear(3, 2)
    ckpt.load_trainable(other, ["weight"], ckpt.latest_checkpoint(tmp_path) / ckpt.TRAINABLE_FILE)
    assert torch.equal(other.weight, model.weight) and not torch.equal(other.bias, model.bias)
    with pytest.raises(ValueError, match="missing \\['bias'\\]"):
        ckpt.load_trainable(other, ["weight", "bias"], ckpt.latest_checkpoint(tmp_path) / ckpt.TRAINABLE_FILE)


def test_rng_state_round_trip():
    torch.manual_seed(1)
    np.random.seed(1)
    saved = ckpt.rng_state()
    a = (torch.rand(3), np.random.rand(3))
    torch.manual_seed(2)
    ckpt.set_rng_state(saved)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ---- feature cache storage ---------------------------------------------------------------------------


def test_cache_keys_follow_content_and_identity(tmp_path):
    a, b, c = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "c.wav"
    a.write_bytes(b"RIFF-one")
    b.write_bytes(b"RIFF-one")
    c.write_bytes(b"RIFF-two")
    assert audio_key(a) == audio_key(b) != audio_key(c)
    assert audio_key(a, (0.0, 1.5)) != audio_key(a)
    cache = FeatureCache(tmp_path / "cache", {"weights_sha256": "x"}, "fp32")
    states = torch.randn(7, 4)
    cache.write_shard({audio_key(a): states}, "r0")
    reopened = FeatureCache(tmp_path / "cache", {"weights_sha256": "x"}, "fp32")
    assert torch.equal(reopened.get(audio_key(b)), states) and audio_key(c) not in reopened
    other_encoder = FeatureCache(tmp_path / "cache", {"weights_sha256": "y"}, "fp32")
    assert len(other_encoder) == 0 and other_encoder.dir != reopened.dir
    assert len(FeatureCache(tmp_path / "cache", {"weights_sha256": "x"}, "fp16")) == 0
    assert not list((tmp_path / "cache").rglob(".tmp-*"))
