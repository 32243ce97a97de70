"""Training augmentation (qaudio/training/augmentation.py): each augmentation does what it says,
the draws are a function of (seed, stream position, example), dev batches stay clean, the encoder
cache is turned off for waveform augmentation, and bad settings are named."""

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from qaudio.data import Example
from qaudio.specs import get_task
from qaudio.training.augmentation import (
    Augmenter,
    AugmentSpec,
    FolderNoise,
    apply_masks,
    change_speed,
    mask_spans,
    mix_at_snr,
    retime,
    rms,
    use_encoder_cache,
)
from qaudio.training.batching import Collator
from qaudio.training.config import TrainConfig
from qaudio.training.corpus import Item

SR = 16_000


def tone(seconds: float = 1.0, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def spec(augment: str, **fields) -> AugmentSpec:
    return AugmentSpec.from_config(TrainConfig(augment=augment, **fields))


def db(ratio: float) -> float:
    return 20 * np.log10(ratio)


# ---- each augmentation -------------------------------------------------------------------------


def test_gain_scales_by_the_drawn_decibels():
    clip = tone()
    augmenter = Augmenter(spec("gain:1", augment_gain_db="4.5,4.5"), seed=0, max_seconds=30)
    out, factor = augmenter.waveform(clip, augmenter.rng(0, "a"))
    assert factor == 1.0 and len(out) == len(clip)
    assert db(rms(out) / rms(clip)) == pytest.approx(4.5, abs=1e-4)


def test_noise_is_mixed_at_the_drawn_snr_from_scene_textures_and_from_a_folder(tmp_path):
    clip = tone(2.0)
    for snr in (0.0, 12.0):
        out = mix_at_snr(clip, np.random.default_rng(0).standard_normal(len(clip)), snr)
        assert db(rms(clip) / rms(out - clip)) == pytest.approx(snr, abs=0.01)
    scenes = Augmenter(spec("noise:1", augment_snr_db="7,7"), seed=0, max_seconds=30)
    out, _ = scenes.waveform(clip, scenes.rng(3, "a"))
    assert db(rms(clip) / rms(out - clip)) == pytest.approx(7.0, abs=0.01)
    # A user folder: a short file (looped to the clip's length), in a subfolder.
    (tmp_path / "noises" / "hum").mkdir(parents=True)
    sf.write(tmp_path / "noises" / "hum" / "a.wav", tone(0.3, 100.0), SR)
    folder = Augmenter(spec("noise:1", augment_snr_db="3,3", augment_noise_dir=str(tmp_path / "noises")), 0, 30)
    out, _ = folder.waveform(clip, folder.rng(3, "a"))
    noise = out - clip
    assert db(rms(clip) / rms(noise)) == pytest.approx(3.0, abs=0.01)
    spectrum = np.abs(np.fft.rfft(noise))
    assert np.argmax(spectrum) * SR / len(noise) == pytest.approx(100.0, abs=1.0)  # the folder's hum


def test_speed_changes_length_and_pitch_by_the_factor_and_retimes_targets():
    clip = tone(2.0, 440.0)
    for factor in (0.9, 1.1):
        out = change_speed(clip, factor)
        assert abs(len(out) - len(clip) / factor) <= 2
        peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * SR / len(out)
        assert peak_hz == pytest.approx(440.0 * factor, abs=2.0)
    assert retime("<|0.50|>hello<|1.10|>", 1.1) == "<|0.45|>hello<|1.00|>"
    # A clip that slowing down would push past the encoder window keeps its speed.
    slow = Augmenter(spec("speed:1", augment_speeds="0.9"), seed=0, max_seconds=2.05)
    out, factor = slow.waveform(clip, slow.rng(0, "a"))
    assert factor == 1.0 and len(out) == len(clip)


def test_masks_set_exactly_the_drawn_spans_to_the_mean():
    x = np.random.default_rng(0).standard_normal((80, 300))
    fill = x.mean()
    masked = apply_masks(x.copy(), np.random.default_rng(5), (2, 27, 2, 40))
    rng = np.random.default_rng(5)  # the same draws, in the same order
    bins = {b for a, e in mask_spans(rng, 80, 2, 27) for b in range(a, e)}
    frames = {f for a, e in mask_spans(rng, 300, 2, 40) for f in range(a, e)}
    assert bins and frames
    changed = masked != x
    assert set(np.nonzero(changed.all(axis=1))[0]) == bins  # whole bins masked
    assert set(np.nonzero(changed.all(axis=0))[0]) == frames  # whole frames masked
    keep = np.ones_like(changed)
    keep[sorted(bins), :] = False
    keep[:, sorted(frames)] = False
    assert np.array_equal(masked[keep], x[keep]) and np.allclose(masked[~keep], fill)


# ---- determinism, dev batches, the collator ---------------------------------------------------------


def test_the_same_seed_step_and_example_give_the_same_audio_and_others_do_not():
    augmenter = Augmenter(spec("speed,gain:1,noise:1"), seed=3, max_seconds=30)
    clip = tone(1.5)

    def run(position: int, example: str, seed: int = 3) -> np.ndarray:
        a = augmenter if seed == 3 else Augmenter(augmenter.spec, seed, 30)
        return a.waveform(clip, a.rng(position, example))[0]

    assert np.array_equal(run(7, "x"), run(7, "x"))
    for other in (run(8, "x"), run(7, "y"), run(7, "x", seed=4)):
        assert len(other) != len(run(7, "x")) or not np.array_equal(other, run(7, "x"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model's processor and three ASR items over tone clips."""
    from qaudio.training.setup import build_model

    root = tmp_path_factory.mktemp("clips")
    asr = get_task("asr")
    items = []
    for i, hz in enumerate((220.0, 330.0, 440.0)):
        path = root / f"c{i}.wav"
        sf.write(path, tone(1.0 + 0.3 * i, hz), SR)
        items.append(Item(Example(f"c{i}", str(path), 1.0 + 0.3 * i, "asr", target="a cat sat"), asr, "test"))
    model = build_model(TrainConfig(model="tiny"), ["a cat sat on the mat"], None)
    return model.processor, items


def test_collated_batches_are_augmented_reproducibly_and_dev_batches_never(tiny):
    processor, items = tiny
    augmenter = Augmenter(spec("gain,noise,specaugment"), seed=0, max_seconds=30)
    plain = Collator(processor, items, "tags", 0, 30.0)
    augmented = Collator(processor, items, "tags", 0, 30.0, augment=augmenter)
    request = [(5, 0), (5, 1), (5, 2)]
    first, again = augmented(request), augmented(request)
    assert torch.equal(first.inputs["input_features"], again.inputs["input_features"])
    clean = plain(request).inputs["input_features"]
    assert not torch.equal(first.inputs["input_features"], clean)
    later = augmented([(6, i) for _, i in request]).inputs["input_features"]
    assert not torch.equal(later, first.inputs["input_features"])  # another step, other draws
    dev = [(-1, i) for _, i in request]
    assert torch.equal(augmented(dev).inputs["input_features"], plain(dev).inputs["input_features"])
    # SpecAugment masks real frames only: padding stays zero.
    lengths = first.inputs["feature_lengths"]
    assert all(float(first.inputs["input_features"][i, :, lengths[i] :].abs().sum()) == 0 for i in range(3))


def test_feature_mask_masks_cached_encoder_outputs_without_touching_the_cache(tiny):
    processor, items = tiny

    class Cache:
        def __init__(self):
            self.states = {f"k{i}": torch.randn(40 + 10 * i, processor.config.encoder.d_model) for i in range(3)}

        def get(self, key: str) -> torch.Tensor:
            return self.states[key]

    cache = Cache()
    stored = {k: v.clone() for k, v in cache.states.items()}
    augmenter = Augmenter(spec("feature-mask"), seed=0, max_seconds=30)
    keys = ["k0", "k1", "k2"]
    collator = Collator(processor, items, "tags", 0, 30.0, cache=cache, keys=keys, augment=augmenter)
    states = collator([(2, 0), (2, 1), (2, 2)]).inputs["encoder_states"]
    assert all(torch.equal(cache.states[k], stored[k]) for k in keys)
    changed = [not torch.equal(states[i, : len(stored[k])], stored[k]) for i, k in enumerate(keys)]
    assert all(changed)
    dev = collator([(-1, 0)]).inputs["encoder_states"]
    assert torch.equal(dev[0], stored["k0"])


# ---- the encoder cache and bad settings --------------------------------------------------------------


def test_waveform_augmentation_turns_the_cache_off_and_feature_mask_needs_it():
    said = []
    assert use_encoder_cache(spec("noise,specaugment"), "cache/", said.append) is False
    assert "encoder cache (cache/) is off" in said[0] and "feature-mask" in said[0]
    assert use_encoder_cache(spec("feature-mask"), "cache/", said.append) is True
    assert use_encoder_cache(None, "cache/", said.append) is True and len(said) == 1
    with pytest.raises(ValueError, match=r"feature-mask .* needs --cache-encoder DIR"):
        use_encoder_cache(spec("feature-mask"), None, said.append)
    with pytest.raises(ValueError, match="choose either feature-mask"):
        use_encoder_cache(spec("gain,feature-mask"), "cache/", said.append)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"augment": "noise,reverb"}, r"unknown augmentation 'reverb'; expected some of speed, gain, noise"),
        ({"augment": "gain:1.2"}, r"'gain:1.2': probability 1.2 is outside \[0, 1\]"),
        ({"augment": "gain:often"}, r"the probability 'often' is not a number"),
        ({"augment_snr_db": "20,5"}, r"--augment-snr-db is '20,5'; expected LO,HI with LO <= HI"),
        ({"augment_speeds": "0.9,3"}, r"--augment-speeds is '0.9,3'; expected numbers in \[0.5, 2\]"),
        ({"augment_time_ratio": 1.5}, r"--augment-time-ratio must be in \[0, 1\]"),
    ],
)
def test_bad_settings_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)


def test_an_empty_missing_or_unreadable_noise_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(ValueError, match=r"empty: no noise files in it; expected audio files \(.wav"):
        FolderNoise(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"missing: not a folder"):
        FolderNoise(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.raises(ValueError, match=r"1 of 1 file\(s\) cannot be used: .*broken.wav"):
        Augmenter(spec("noise", augment_noise_dir=str(tmp_path / "bad")), seed=0, max_seconds=30)


def test_the_compress_table_has_augmentation_rows(tmp_path, capsys):
    from benchmarks import compress

    assert compress.main(["--corpus", str(tmp_path), "--variants", "augment-on,augment-sometimes"]) == 2
    error = capsys.readouterr().err
    assert "unknown variant(s) augment-sometimes" in error and "augment-off, augment-on" in error
    assert compress.AUGMENTED["augment-off"] == "" and compress.AUGMENTED["augment-on"]


# ---- a training run: cache off, and kill/resume gives the same losses --------------------------------


@pytest.mark.slow
def test_an_augmented_run_resumes_with_the_same_losses(tmp_path, capsys):
    from qaudio.synth import espeak
    from qaudio.synth.corpus import generate
    from qaudio.train import train
    from qaudio.training.metrics_log import read_metrics

    if not espeak.available():
        pytest.skip("eSpeak NG (espeakng-loader) is not installed")
    corpus = tmp_path / "corpus"
    generate(corpus, size="tiny", seed=0, workers=1, progress=False)
    run = tmp_path / "run"
    cfg = TrainConfig(
        model="tiny",
        recipes=f"synthetic:{corpus}",
        tasks="asr,srwt",
        output_dir=str(run),
        precision="fp32",
        threads=1,
        batch_size=8,
        max_steps=4,
        save_every=2,
        log_every=1,
        eval_every=0,
        dev_split="none",
        progress=False,
        tensorboard=False,
        plot=False,
        eta=False,
        augment="speed,gain,noise,specaugment",
        cache_encoder=str(tmp_path / "cache"),
    )
    train(cfg)
    said = capsys.readouterr().out
    assert "augmenting training examples (all tasks): speed p=1, gain p=0.5, noise p=0.5, specaugment p=1" in said
    assert "the encoder cache" in said and not (tmp_path / "cache").exists()
    whole = {r["step"]: r["loss"] for r in read_metrics(run, "train")}
    shutil.rmtree(run / "checkpoints" / "step-00000004")  # as if killed after the step-2 checkpoint
    shutil.rmtree(run / "model")
    train(cfg)
    assert "resuming from" in capsys.readouterr().out
    resumed = {r["step"]: r["loss"] for r in read_metrics(run, "train")}
    assert list(resumed) == [1, 2, 3, 4] and resumed == whole  # exact: the same augmented audio
