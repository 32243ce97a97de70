"""Smoke tests of the benchmark scripts: tiny sizes, a step or two, the JSON carries the ratios.

The drivers normally run each (system, mode) in a fresh subprocess; most tests here run the
workers in-process (the same code, minus ~5 s of imports per process) and one test runs a real
worker subprocess. The figures themselves are not asserted (they are timings); their presence,
sign and the fairness facts (same weights, identical outputs across batch sizes) are. One torch
thread: tiny operators on two threads crawl when another process holds the second core.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

# benchmarks/ is a top-level folder, not part of the installed package: import it from the checkout
# also when pytest is started as `pytest` (which, unlike `python -m pytest`, does not add the cwd).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, infer_throughput, systems, train_throughput
from benchmarks.clips import MIXES, make_clips


def _in_process(module):
    def run(module_name, spec, timeout_s=900):
        threads = torch.get_num_threads()  # a worker sets its own; give the session its setting back
        try:
            return json.loads(json.dumps(module.worker(spec)))  # what a subprocess would hand back
        finally:
            torch.set_num_threads(threads)

    return run


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_train_throughput_json_has_ratios(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common, "run_worker", _in_process(train_throughput))
    peak = common.matmul_peak_flops
    monkeypatch.setattr(common, "matmul_peak_flops", lambda device, dtype: peak(device, dtype, seconds=0.05))
    out = tmp_path / "train.json"
    code = train_throughput.main(
        [
            "--size",
            "tiny",
            "--mixes",
            "short",
            "--batch-size",
            "2",
            "--warmup",
            "0",
            "--steps",
            "1",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    modes = {(m["mix"], m["mode"]): m for m in data["modes"]}
    assert set(modes) == {("short", "live"), ("short", "cached")}
    for m in modes.values():
        for side in ("qaudio", "peer"):
            assert _positive(m[side]["examples_per_s"]) and _positive(m[side]["audio_seconds_per_s"])
            assert _positive(m[side]["peak_memory_mib"])
            assert 0 < m[side]["fraction_of_matmul_peak"] < 1
            assert math.isfinite(m[side]["loss_last"])
        for key in ("examples_per_s", "audio_seconds_per_s", "peak_memory"):
            assert _positive(m["ratio"][key])
        q, p = m["qaudio"], m["peer"]
        assert m["ratio"]["examples_per_s"] == pytest.approx(q["examples_per_s"] / p["examples_per_s"])
        assert m["target"]["met"] in (True, False)
    assert modes[("short", "cached")]["qaudio"]["cache_build_s"] > 0
    assert modes[("short", "cached")]["peer"]["mode"] == "live"  # the peer has no cache
    # The same trainable LLM on both sides; qaudio's projector differs by design.
    q, p = modes[("short", "live")]["qaudio"], modes[("short", "live")]["peer"]
    assert q["audio_tokens_per_second"] == 12.5 and p["audio_tokens_per_second"] == 25.0
    assert data["machine"]["cores"] >= 1 and data["command"].startswith("python -m benchmarks.train_throughput")
    assert "ratio q/p" in capsys.readouterr().out


def test_infer_throughput_json_has_ratios_and_identical_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common, "run_worker", _in_process(infer_throughput))
    out = tmp_path / "infer.json"
    code = infer_throughput.main(
        [
            "--size",
            "tiny",
            "--clips",
            "3",
            "--new-tokens",
            "3",
            "--batch-sizes",
            "1,2",
            "--peer-batch-sizes",
            "1,2",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert [m["batch_size"] for m in data["modes"]] == [1, 2]
    for m in data["modes"]:
        for side in ("qaudio", "peer", "peer_best"):
            assert _positive(m[side]["audio_seconds_per_s"]) and _positive(m[side]["tokens_per_s"])
            assert _positive(m[side]["ttft_s"]) and _positive(m[side]["peak_memory_mib"])
        for key in ("audio_seconds_per_s", "tokens_per_s", "ttft", "peak_memory"):
            for basis in ("ratio", "ratio_vs_peer_best", "ratio_vs_peer_same_batch"):
                assert _positive(m[basis][key])
        # fp32 batched greedy decoding must reproduce batch 1 exactly.
        assert m["outputs_equal_batch_1"]["identical"] is True
    assert "= batch 1" in capsys.readouterr().out


def test_worker_subprocess_round_trip():
    spec = {
        "system": "peer",
        "batch_size": 1,
        "size": "tiny",
        "stack": None,
        "mix": "short",
        "clips": 1,
        "new_tokens": 2,
        "device": "cpu",
        "dtype": "fp32",
        "seed": 0,
        "threads": 1,
    }
    result = common.run_worker("benchmarks.infer_throughput", spec)
    assert result["system"] == "peer" and len(result["outputs"]) == 1
    assert result["memory_method"].startswith("phase peak RSS")  # qaudio.profiling, CPU


def test_peer_is_built_at_qaudio_sizes_with_its_weights():
    config = systems.model_config("tiny")
    texts = [c.text for c in make_clips(MIXES["short"], 4, seed=1)]
    ours, processor = systems.build_qaudio(config, texts, seed=3)
    peer = systems.build_peer(config, texts, seed=3)
    for name, tensor in ours.language_model.get_decoder().state_dict().items():
        assert torch.equal(tensor, peer.model.model.language_model.state_dict()[name]), name
    assert torch.equal(ours.audio_tower.layers[0].fc1.weight, peer.model.model.audio_tower.layers[0].fc1.weight)
    trainable = {
        n.split(".")[1] for n, p in peer.model.named_parameters() if p.requires_grad and n.startswith("model.")
    }
    assert trainable == {"multi_modal_projector", "language_model"}  # frozen encoder, as qaudio's
    assert processor.tokenizer.get_vocab() == peer.tokenizer.get_vocab()


def test_clips_follow_the_mix_and_the_seed():
    mix = MIXES["librispeech"]
    a, b = make_clips(mix, 5, seed=7), make_clips(mix, 5, seed=7)
    assert all(mix.min_s <= c.duration <= mix.max_s for c in a)
    assert [c.key for c in a] == [c.key for c in b] and [c.text for c in a] == [c.text for c in b]
    assert make_clips(mix, 1, seed=8)[0].key != a[0].key


def test_flop_count_includes_cpu_attention():
    q = torch.randn(2, 4, 16, 8, requires_grad=True)  # (B, H, L, D)

    def run():
        torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()

    forward = 2 * (2 * 2 * 4 * 16 * 16 * 8)  # QK^T and AV: two (16 x 8) @ (8 x 16) products per head
    # torch's backward formula: the scores recomputed, then four products (dV, dP, dQ, dK).
    assert common.count_flops(run) == forward + forward * 5 // 2


def test_bad_arguments_are_named(capsys):
    assert train_throughput.main(["--mixes", "podcasts"]) == 2
    assert "--mixes podcasts" in capsys.readouterr().err
    assert infer_throughput.main(["--batch-sizes", "8,32"]) == 2
    assert "batch size 1" in capsys.readouterr().err
    assert train_throughput.main(["--size", "nonexistent"]) == 2
    assert "unknown model config" in capsys.readouterr().err


def test_bf16_cached_training_step_runs():
    spec = {
        "system": "qaudio",
        "mode": "cached",
        "mix": "short",
        "size": "tiny",
        "stack": None,
        "batch_size": 2,
        "warmup": 0,
        "steps": 1,
        "device": "cpu",
        "dtype": "bf16",
        "seed": 0,
        "threads": 1,
        "flops": False,
    }
    threads = torch.get_num_threads()
    try:
        result = train_throughput.worker(spec)
    finally:
        torch.set_num_threads(threads)
    assert math.isfinite(result["loss_last"]) and result["cache_build_s"] > 0


def test_demo_step_compares_variants_against_both_peaks(tmp_path, capsys):
    from benchmarks import demo_step

    out = tmp_path / "demo.json"
    assert (
        train_throughput.main(
            [
                "--demo",
                "--precisions",
                "fp32",
                "--variants",
                "first-release,qaudio",
                "--steps",
                "1",
                "--threads",
                "1",
                "--preset",
                "tiny",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert _positive(data["peaks"]["fp32"]) and _positive(data["peaks"]["bf16"])
    (result,) = data["results"]
    assert set(result["seconds_per_step"]) == {"first-release", "qaudio"}
    assert result["flops_per_step"] > 1e6
    assert all(0 < share < 1 for share in result["matmul_share"].values())
    # The same weights and batches: the kernels change, the losses do not (beyond rounding).
    first, now = result["warmup_losses"]["first-release"], result["warmup_losses"]["qaudio"]
    assert first == pytest.approx(now, abs=1e-3)
    printed = capsys.readouterr().out
    assert "% fp32 peak" in printed and "% bf16 peak" in printed
    with pytest.raises(SystemExit):  # the before/after needs the first release's step
        demo_step.main(["--variants", "qaudio"])
    assert "must include first-release" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo_step.main(["--variants", "first-release,qadio"])
    assert "unknown qadio" in capsys.readouterr().err


def test_cache_invariance_finds_no_difference_through_fill_cache(tmp_path, capsys):
    from benchmarks import cache_invariance

    out = tmp_path / "invariance.json"
    assert cache_invariance.main(["--preset", "tiny", "--clips", "8", "--json", str(out)]) == 0
    results = {r["grouping"]: r for r in json.loads(out.read_text())["results"]}
    filled = [r for name, r in results.items() if name.startswith("fill_cache")]
    assert len(filled) == 3 and all(r["differ"] == 0 and r["clips"] > 0 for r in filled)
    assert "one clip per fill" in capsys.readouterr().out
