"""Self-training (qaudio.selftrain): pseudo-label filtering, the confidence scores, the noise-floor
SNR estimate, source weights, and two rounds on the tiny preset with an interrupted round resumed."""

import json
from pathlib import Path

import numpy as np
import pytest

from qaudio.data import Example, read_manifest
from qaudio.selftrain.pseudo_label import FilterConfig, agreement, select
from qaudio.selftrain.rounds import weighted

LABELED = [
    "the red cat sat on the mat",
    "a green frog jumps into the pond",
    "we walk to the market at noon",
    "the old man reads a long book",
    "my sister plays the violin",
    "birds sing in the morning light",
    "the train leaves at seven",
    "please close the kitchen door",
]
DOMAIN = [
    "the pump pressure rose above the valve limit",
    "check the turbine bearing temperature",
    "the compressor stopped after the alarm",
    "open the drain valve on line four",
    "the boiler feed pump is running",
]


def scored(id: str, target: str, logprob: float, agree: float, flags=None) -> Example:
    meta = {"logprob": logprob, "agreement": agree}
    if flags:
        meta["flags"] = flags
    return Example(id=id, audio="x.wav", duration=1.0, task="asr", target=target, meta=meta)


def test_select_keeps_confident_agreeing_labels_most_likely_first():
    clips = [
        scored("a", "one two", -0.2, 1.0),
        scored("b", "three", -2.0, 1.0),
        scored("c", "four", -0.1, 0.5),
        scored("d", "", -0.1, 1.0),
        scored("e", "five six", -0.5, 0.9),
        scored("f", "loop loop", -0.1, 1.0, ["repetition"]),
    ]
    kept, dropped = select(clips, FilterConfig(min_logprob=-1.0, min_agreement=0.8))
    assert [ex.id for ex in kept] == ["a", "e"]
    assert dropped == {"low log-probability": 1, "decodes disagree": 1, "empty transcript": 1, "flagged": 1}
    kept, dropped = select(clips, FilterConfig(min_logprob=-1.0, min_agreement=0.8, keep_fraction=1 / 6))
    assert [ex.id for ex in kept] == ["a"] and dropped["beyond keep fraction"] == 1
    with pytest.raises(ValueError, match="keep_fraction"):
        FilterConfig(keep_fraction=0)


def test_agreement_is_one_minus_word_error_rate():
    assert agreement("a b c d", "a b c d") == 1.0
    assert agreement("a b x d", "a b c d") == pytest.approx(0.75)
    assert agreement("", "") == 1.0 and agreement("a", "") == 0.0
    assert agreement("x y z w v u", "a") == 0.0  # clipped: WER above 1


def test_weights_repeat_and_subsample_each_source():
    examples = [Example(id=f"e{i}", audio="x.wav", duration=1.0, task="asr", target="w") for i in range(200)]
    rng = np.random.default_rng(0)
    twice = weighted(examples, 2.0, "pseudo", rng)
    assert len(twice) == 400 and len({ex.id for ex in twice}) == 400
    assert all(ex.meta["source"] == "pseudo" for ex in twice)
    half = weighted(examples, 0.5, "synthetic", rng)
    assert 70 < len(half) < 130 and weighted(examples, 0.0, "labeled", rng) == []


def test_snr_estimate_follows_the_mixed_noise():
    from qaudio.selftrain.domain_stats import noise_exponent, snr_db
    from qaudio.synth import dsp, espeak
    from qaudio.synth.scenes import mix_speech

    if not espeak.available():
        pytest.skip("eSpeak NG (espeakng-loader) is not installed")
    speech = espeak.synthesize("the pump pressure rose above the valve limit again", "en").samples
    rng = np.random.default_rng(0)
    estimates = {}
    for exponent in (0.0, 1.0):
        for snr in (0.0, 10.0):
            mixed = mix_speech(dsp.colored(rng, len(speech), exponent).astype(np.float32), speech, snr, 0)
            estimates[exponent, snr] = snr_db(mixed)
            assert abs(noise_exponent([mixed]) - exponent) < 0.4
    for (exponent, snr), est in estimates.items():
        assert abs(est - snr) < 5.0, estimates  # a floor estimate: rough on a clip with few pauses
    for exponent in (0.0, 1.0):
        assert estimates[exponent, 10.0] > estimates[exponent, 0.0] + 5, estimates


def test_the_command_line_flags_are_the_config_fields():
    import argparse

    from qaudio.selftrain.cli import add_arguments
    from qaudio.selftrain.config import SelfTrainConfig

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--model",
            "m",
            "--unlabeled",
            "u",
            "--dev",
            "d.jsonl",
            "--rounds",
            "2",
            "--keep-fraction",
            "0.5",
            "--no-progress",
            "--weight-synthetic",
            "0.25",
        ]
    )
    cfg = SelfTrainConfig(**vars(args))
    assert (cfg.rounds, cfg.keep_fraction, cfg.progress, cfg.weight_synthetic, cfg.text) == (2, 0.5, False, 0.25, None)
    with pytest.raises(ValueError, match="--max-clip-seconds must be in"):
        SelfTrainConfig(model="m", unlabeled="u", dev="d", max_clip_seconds=45)


# ---- two rounds on the tiny preset -----------------------------------------------------------------


def speak(lines: list[str], voice: str, out: Path, pad_s: float = 0.0) -> list[Path]:
    from qaudio.synth import dsp, espeak

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, line in enumerate(lines):
        samples = espeak.synthesize(line, voice).samples
        samples = np.concatenate([samples, np.zeros(int(pad_s * dsp.SR), np.float32)])
        paths.append(out / f"{i:02d}.wav")
        dsp.write_wav(paths[-1], samples)
    return paths


def manifest(paths: list[Path], lines: list[str], path: Path) -> Path:
    import soundfile as sf

    path.write_text(
        "".join(
            json.dumps(
                {"id": p.stem, "audio": str(p), "duration": round(sf.info(p).duration, 3), "task": "asr", "target": t}
            )
            + "\n"
            for p, t in zip(paths, lines)
        )
    )
    return path


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    from qaudio.synth import dsp, espeak

    if not espeak.available():
        pytest.skip("eSpeak NG (espeakng-loader) is not installed")
    root = tmp_path_factory.mktemp("selftrain")
    labeled = manifest(speak(LABELED, "en+m3", root / "labeled"), LABELED, root / "labeled.jsonl")
    unlabeled = root / "unlabeled"
    speak(DOMAIN[:3], "en+f2", unlabeled)
    # one long recording: four sentences with pauses, longer than the clip limit below
    long = np.concatenate(
        [np.concatenate([espeak.synthesize(s, "en+f2").samples, np.zeros(8000, np.float32)]) for s in DOMAIN[1:5]]
    )
    dsp.write_wav(unlabeled / "long.wav", long)
    dev = manifest(speak(DOMAIN[3:], "en+f2", root / "dev"), DOMAIN[3:], root / "dev.jsonl")
    (root / "domain.txt").write_text("\n".join(DOMAIN) + "\n")
    from qaudio.train import train
    from qaudio.training.config import TrainConfig

    model = train(
        TrainConfig(
            model="tiny",
            recipes=f"manifest:{labeled}",
            tasks="asr",
            dev_split="none",
            output_dir=str(root / "start"),
            precision="fp32",
            threads=1,
            batch_size=4,
            max_steps=2,
            progress=False,
            tensorboard=False,
            plot=False,
            eta=False,
        )
    )
    return {
        "root": root,
        "labeled": labeled,
        "unlabeled": unlabeled,
        "dev": dev,
        "model": model,
        "text": root / "domain.txt",
        "long_seconds": len(long) / dsp.SR,
    }


@pytest.mark.slow
def test_two_rounds_write_their_manifests_and_an_interrupted_round_resumes(domain, tmp_path, monkeypatch):
    import qaudio.train
    from qaudio.selftrain import SelfTrainConfig, self_train
    from qaudio.selftrain import pseudo_label as pl
    from qaudio.training.metrics_log import read_metrics

    out = tmp_path / "run"
    (tmp_path / "train.yaml").write_text("log-every: 1\n")  # further training options, for every round
    cfg = SelfTrainConfig(
        model=str(domain["model"]),
        unlabeled=str(domain["unlabeled"]),
        dev=str(domain["dev"]),
        out=str(out),
        text=str(domain["text"]),
        labeled=f"manifest:{domain['labeled']}",
        rounds=2,
        patience=2,
        max_clip_seconds=6.0,
        num_beams=2,
        max_new_tokens=6,
        min_logprob=-100.0,
        min_agreement=0.0,
        keep_fraction=0.5,
        voices="en",
        max_voices=1,
        weight_labeled=1.0,
        weight_pseudo=2.0,
        weight_synthetic=0.5,
        train_steps=4,
        batch_size=4,
        threads=1,
        save_every=2,
        bootstrap=50,
        progress=False,
        train_config=str(tmp_path / "train.yaml"),
    )
    # Interrupt round 2's training right after its first checkpoint.
    real_save = qaudio.train.save_checkpoint
    calls = {"pseudo": 0, "saves": 0}

    def save_then_die(run_dir, *args, **kwargs):
        path = real_save(run_dir, *args, **kwargs)
        if "round-2" in str(run_dir):
            calls["saves"] += 1
            if calls["saves"] == 1:
                raise KeyboardInterrupt("simulated interruption")
        return path

    real_pseudo = pl.pseudo_label

    def counting_pseudo(*args, **kwargs):
        calls["pseudo"] += 1
        return real_pseudo(*args, **kwargs)

    monkeypatch.setattr(qaudio.train, "save_checkpoint", save_then_die)
    monkeypatch.setattr(pl, "pseudo_label", counting_pseudo)
    with pytest.raises(KeyboardInterrupt):
        self_train(cfg)
    assert calls["pseudo"] == 2 and (out / "round-2" / "synth" / "DONE").is_file()
    assert not (out / "round-2" / "train" / "DONE").exists()
    before = {
        p: p.stat().st_mtime_ns
        for p in (out / "round-2").rglob("*.jsonl")
        if p.relative_to(out / "round-2").parts[0] != "train"
    }  # the training run's own logs go on

    best = self_train(cfg)  # the same command continues the run
    assert calls["pseudo"] == 2  # no finished step was redone ...
    assert {p: p.stat().st_mtime_ns for p in before} == before
    steps = [r["step"] for r in read_metrics(out / "round-2" / "train", "train")]
    assert steps == [1, 2, 3, 4]  # ... and training went on from its step-2 checkpoint, not from scratch

    # The clips: the long recording cut at pauses into pieces within the limit.
    clips = list(read_manifest(out / "clips" / "clips.jsonl"))
    pieces = [c for c in clips if c.meta["recording"].endswith("long.wav")]
    assert len(pieces) >= 2 and all(c.duration <= 6.0 for c in pieces)
    assert sum(c.duration for c in pieces) == pytest.approx(domain["long_seconds"], abs=0.01)
    assert len(clips) == 3 + len(pieces)

    for r in (1, 2):
        folder = out / f"round-{r}"
        scored = list(read_manifest(folder / "pseudo" / "scored.jsonl"))
        kept = list(read_manifest(folder / "pseudo" / "kept.jsonl"))
        assert [ex.id for ex in scored] == [c.id for c in clips]  # every clip scored, in order
        assert all({"logprob", "agreement", "greedy", "beam"} <= set(ex.meta) for ex in scored)
        assert [ex.id for ex in kept] == [ex.id for ex in select(scored, FilterConfig(-100.0, 0.0, 0.5))[0]]
        assert len(kept) <= -(-len(scored) // 2)
        synthetic = list(read_manifest(folder / "synth" / "train.jsonl"))
        domain_text = {" ".join(s.split()) for s in DOMAIN} | {ex.target for ex in kept}
        assert synthetic and all(ex.meta["source"] == "tts-augment" and ex.meta["voice"] == "en" for ex in synthetic)
        assert len(synthetic) == len(domain_text)
        stats = json.loads((folder / "synth" / "stats.json").read_text())
        assert stats["clips"] == len(clips) and stats["f0_median"] is not None
        train = list(read_manifest(folder / "train.jsonl"))
        sources = json.loads((folder / "train_sources.json").read_text())
        assert sources["labeled"] == len(LABELED) and sources["pseudo"] == 2 * len(kept)
        assert sum(sources.values()) == len(train) and len({ex.id for ex in train}) == len(train)
        assert (folder / "train" / "model" / "config.json").is_file()
        assert (folder / "dev" / "report.json").is_file()

    table = (out / "rounds.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["0", "1", "2"]
    assert "WER" in table and "[" in table  # dev WER with its bootstrap interval
    best_record = json.loads((out / "best.json").read_text())
    assert Path(best_record["model"]) == best
    devs = {r: json.loads((out / f"round-{r}" / "dev" / "dev.json").read_text())["value"] for r in (0, 1, 2)}
    assert best_record["dev"]["value"] == min(devs.values()) or best_record["round"] == 0


@pytest.mark.slow  # its fixture trains a tiny model on synthesized speech (about 30 s)
def test_pseudo_label_confidence_is_the_models_exact_likelihood(domain):
    from qaudio.selftrain import backend
    from qaudio.specs import get_task

    model = backend.load_model(domain["model"], max_new_tokens=6)
    clip = str(min(domain["unlabeled"].glob("0*.wav")))
    text = "the pump pressure"
    ((total, tokens),) = backend.score(model, [clip], [text])
    # Independently: the model's training loss on (clip, prompt, text) is the mean NLL of the same tokens.
    import torch

    from qaudio.audio import load_audio

    prompt = model.prompt(get_task("asr").request())
    batch = model.processor.prepare([load_audio(clip).samples], [prompt], [text])
    with torch.no_grad():
        out = model.model(**batch)
    assert tokens == int((batch["labels"] != -100).sum()) == int(out.target_tokens[0])
    assert total / tokens == pytest.approx(-float(out.loss_sum[0] / out.target_tokens[0]), rel=1e-4)
    assert backend.score(model, [clip], [""])[0][0] == -np.inf
