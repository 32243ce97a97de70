"""The pretrained-model path as users take it, on tiny stand-ins of the real hub models.

The stand-ins (tests/fixtures/standins.py) are local directories with the quirks of Whisper
small / large-v3 / large-v3-turbo, Qwen2.5, Qwen3 and Llama 3. Here: each quirk is read right
when a model is built; tag rows start at the mean of the LLM's own rows even where the
checkpoint pads its vocabulary; the two halves of a tag row get the same weight decay; wrong
sources fail with one line and exit code 2; every model field is a flag, and a resume takes
the flags it is not given from the checkpoint. Then a matrix: each LLM with a frozen, LoRA
and fully trained LLM through train, kill, resume, save, load with the sources moved away,
merged LoRA, and one generate.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoTokenizer, DistilBertConfig, WhisperFeatureExtractor

import qaudio.train as train_module
from qaudio.cli import main as cli_main
from qaudio.config import PRESETS, with_overrides
from qaudio.model import AudioLM
from qaudio.model.trainable import tag_token_ids, unwrap
from qaudio.training.config import TrainConfig, add_arguments, config_from_args
from qaudio.training.metrics_log import read_metrics
from qaudio.training.optim import parameter_groups
from tests.fixtures.standins import PADDING_ROW_VALUE, TEXTS

# Each LLM with the encoder a preset pairs it with (and Llama 3 with the 80-mel Whisper).
PAIRS = {"qwen2.5": "whisper-large-v3", "qwen3": "whisper-large-v3-turbo", "llama3": "whisper-small"}
RNG = np.random.default_rng(0)
AUDIOS = [(0.1 * RNG.standard_normal(n)).astype(np.float32) for n in (9000, 5000)]
PROMPTS = ["<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>", "<|startofanalysis|><|de|>"]


def _config(standins, llm: str, mode: str = "frozen"):
    return with_overrides(
        PRESETS["tiny"],
        encoder={"source": str(standins[PAIRS[llm]])},
        llm={"source": str(standins[llm])},
        trainable={"llm": mode},
    )


def _dtype_on_disk(directory: Path) -> torch.dtype:
    with safe_open(str(directory / "model.safetensors"), framework="pt") as f:
        return f.get_tensor(next(iter(f.keys()))).dtype


# ---- the stand-ins and what a build reads from them --------------------------------------------


def test_the_standins_have_the_quirks_of_the_released_models(standins):
    large, turbo, small = (
        AutoConfig.from_pretrained(standins[n]) for n in ("whisper-large-v3", "whisper-large-v3-turbo", "whisper-small")
    )
    assert (large.num_mel_bins, large.vocab_size, small.num_mel_bins, small.vocab_size) == (128, 51866, 80, 51865)
    assert turbo.decoder_layers < turbo.encoder_layers
    assert _dtype_on_disk(standins["whisper-large-v3"]) == torch.float16
    assert WhisperFeatureExtractor.from_pretrained(standins["whisper-large-v3"]).feature_size == 128
    qwen25, qwen3, llama3 = (AutoConfig.from_pretrained(standins[n]) for n in ("qwen2.5", "qwen3", "llama3"))
    tokenizers = {n: AutoTokenizer.from_pretrained(standins[n]) for n in ("qwen2.5", "qwen3", "llama3")}
    assert qwen25.vocab_size > len(tokenizers["qwen2.5"]) and qwen25.tie_word_embeddings
    assert "sliding_window" in json.loads((standins["qwen2.5"] / "config.json").read_text())
    assert _dtype_on_disk(standins["qwen2.5"]) == torch.bfloat16
    assert tokenizers["qwen2.5"].bos_token is None and tokenizers["qwen2.5"].apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False
    ).startswith("<|im_start|>user")
    assert qwen3.head_dim != qwen3.hidden_size // qwen3.num_attention_heads
    assert len(tokenizers["qwen3"]("<think>", add_special_tokens=False)["input_ids"]) == 1
    llama = tokenizers["llama3"]
    assert not llama3.tie_word_embeddings and llama.pad_token is None
    assert llama("hi")["input_ids"][0] == llama.bos_token_id  # added by the post-processor
    assert llama("hi", add_special_tokens=False)["input_ids"][0] != llama.bos_token_id


@pytest.mark.parametrize(
    "whisper, n_mels, layers",
    [("whisper-large-v3", 128, 2), ("whisper-large-v3-turbo", 128, 3), ("whisper-small", 80, 2)],
)
def test_the_encoder_is_read_from_the_whisper_checkpoint(standins, whisper, n_mels, layers):
    model = AudioLM.build(with_overrides(_config(standins, "llama3"), encoder={"source": str(standins[whisper])}))
    # turbo: the encoder's layer count, not the (smaller) decoder's; fp16 weights load as float32
    assert (model.config.encoder.n_mels, model.config.encoder.layers) == (n_mels, layers)
    assert {p.dtype for p in model.audio_tower.parameters()} == {torch.float32}
    saved = WhisperFeatureExtractor.from_pretrained(standins[whisper])
    assert model.processor.feature_extractor.feature_size == saved.feature_size == n_mels
    batch = model.processor.prepare(AUDIOS, PROMPTS)
    assert batch["input_features"].shape[1] == n_mels


def test_tag_rows_start_at_the_mean_of_the_llms_own_rows_also_on_padding_rows(standins):
    """Qwen2.5 pads its embedding past the tokenizer: the first tags land on those rows."""
    source_tokens = len(AutoTokenizer.from_pretrained(standins["qwen2.5"]))
    source_rows = AutoConfig.from_pretrained(standins["qwen2.5"]).vocab_size
    model = AudioLM.build(_config(standins, "qwen2.5", mode="full"))
    tags = tag_token_ids(model.processor.tokenizer)
    assert tags == list(range(source_tokens, len(model.processor.tokenizer)))  # appended after the LLM's own tokens
    assert tags[0] < source_rows <= tags[-1]  # some tags on padding rows, some on new rows
    weight = unwrap(model.language_model).get_input_embeddings().weight.detach()
    mean = weight[:source_tokens].mean(dim=0)
    assert not torch.isclose(weight[tags], torch.full_like(weight[tags], PADDING_ROW_VALUE)).all(dim=1).any()
    torch.testing.assert_close(weight[tags], mean.expand(len(tags), -1))


def test_an_untied_heads_tag_rows_start_at_its_own_mean(standins):
    source_tokens = len(AutoTokenizer.from_pretrained(standins["llama3"]))
    model = AudioLM.build(_config(standins, "llama3", mode="full"))
    llm, tags = unwrap(model.language_model), tag_token_ids(model.processor.tokenizer)
    assert tags == list(range(source_tokens, len(model.processor.tokenizer)))
    head = llm.get_output_embeddings().weight.detach()
    torch.testing.assert_close(head[tags], head[:source_tokens].mean(dim=0).expand(len(tags), -1))


@pytest.mark.parametrize("mode", ["frozen", "lora", "full"])
def test_both_halves_of_a_tag_row_get_the_same_weight_decay(standins, mode):
    model = AudioLM.build(_config(standins, "llama3", mode))  # untied head: the head has rows of its own
    names = model.trainable_parameter_names()
    decayed, not_decayed = parameter_groups(model, names, weight_decay=0.1)
    llm = unwrap(model.language_model)
    tables = {id(p) for table in (llm.get_input_embeddings(), llm.get_output_embeddings()) for p in table.parameters()}
    trained_tables = [p for p in model.parameters() if p.requires_grad and id(p) in tables]
    assert len(trained_tables) == 2  # the embedding's rows and the head's rows
    assert all(any(p is q for q in not_decayed["params"]) for p in trained_tables)
    assert not any(id(p) in tables for p in decayed["params"])
    assert decayed["params"] or mode == "frozen"  # the projector's (and LoRA's) matrices still decay


# ---- errors a user can act on ------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A manifest corpus of 8 short noise clips with text targets: enough to run the training loop."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(8):
        path = root / f"clip{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(4000 + 800 * i)).astype(np.float32), 16000)
        lines.append(
            json.dumps(
                {
                    "id": f"clip{i}",
                    "audio": str(path),
                    "duration": (4000 + 800 * i) / 16000,
                    "task": "asr",
                    "target": TEXTS[i % len(TEXTS)],
                }
            )
        )
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _flags(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model",
        "tiny",
        "--recipes",
        f"manifest:{corpus}",
        "--tasks",
        "asr",
        "--dev-split",
        "none",
        "--output-dir",
        str(out),
        "--precision",
        "fp32",
        "--threads",
        "1",
        "--batch-size",
        "4",
        "--max-steps",
        "3",
        "--log-every",
        "1",
        "--save-every",
        "2",
        "--no-progress",
        "--no-tensorboard",
        "--no-plot",
        *extra,
    ]


def _cli_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    code = cli_main(["train", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("qaudio train: error:")]
    assert len(lines) == 1 and len(lines[0]) < 600, err
    return lines[0]


def _model_file(tmp_path: Path, encoder: str = "tiny-random", llm: str = "scratch") -> str:
    """A ModelConfig .json naming the sources: the way to set them that predates their flags."""
    path = tmp_path / f"model-{len(list(tmp_path.glob('model-*.json')))}.json"
    with_overrides(PRESETS["tiny"], encoder={"source": encoder}, llm={"source": llm}).save(path)
    return str(path)


def test_wrong_sources_fail_with_one_line_and_exit_code_2(standins, corpus, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    missing = str(tmp_path / "moved" / "whisper")
    line = _cli_error(capsys, _flags(corpus, out, "--model", _model_file(tmp_path, encoder=missing)))
    assert missing in line and "encoder.source" in line and "Whisper checkpoint" in line and "--encoder-source" in line
    line = _cli_error(capsys, _flags(corpus, out, "--model", _model_file(tmp_path, llm="runs/x/step-00000010/llm")))
    assert "llm.source 'runs/x/step-00000010/llm' does not exist" in line and "causal LM" in line
    # A hub id while offline: what was tried and how to use a local copy instead.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    line = _cli_error(capsys, _flags(corpus, out, "--model", _model_file(tmp_path, llm="Qwen/Qwen2.5-0.5B")))
    assert "'Qwen/Qwen2.5-0.5B'" in line and "hf download Qwen/Qwen2.5-0.5B --local-dir DIR" in line
    assert "--llm-source DIR" in line
    # A model that is not a causal LM, and a Whisper checkpoint where the LLM goes (and the reverse).
    DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32).save_pretrained(tmp_path / "bert")
    line = _cli_error(capsys, _flags(corpus, out, "--model", _model_file(tmp_path, llm=str(tmp_path / "bert"))))
    assert "'distilbert' model, which is not a decoder-only causal LM" in line
    line = _cli_error(capsys, _flags(corpus, out, "--model", _model_file(tmp_path, llm=str(standins["whisper-small"]))))
    assert "'whisper' model" in line and "belongs in encoder.source (--encoder-source)" in line
    line = _cli_error(capsys, _flags(corpus, out, "--model", _model_file(tmp_path, encoder=str(standins["qwen3"]))))
    assert "'qwen3' model" in line and "Whisper checkpoint" in line


# ---- flags -----------------------------------------------------------------------------------------


def test_every_model_field_a_user_sets_is_a_flag():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(
        parser.parse_args(
            [
                "--model",
                "tiny",
                "--encoder-source",
                "openai/whisper-small",
                "--llm-source",
                "Qwen/Qwen2.5-0.5B",
                "--llm-tokenizer",
                "Qwen/Qwen2.5-0.5B-Instruct",
                "--projector",
                "qformer",
                "--projector-stack",
                "8",
                "--projector-hidden",
                "64",
                "--projector-queries",
                "2",
                "--projector-layers",
                "1",
                "--projector-heads",
                "4",
                "--train-encoder",
                "lora",
                "--train-projector",
                "false",
                "--train-llm",
                "frozen",
                "--lora-r",
                "4",
                "--lora-alpha",
                "8",
                "--lora-dropout",
                "0.1",
                "--lora-targets",
                "q_proj,v_proj",
                "--encoder-lora-targets",
                "k_proj",
            ]
        )
    )
    config = train_module.model_config_for(cfg)
    assert config.encoder.source == "openai/whisper-small" and config.llm.source == "Qwen/Qwen2.5-0.5B"
    assert config.llm.tokenizer == "Qwen/Qwen2.5-0.5B-Instruct"
    assert (
        config.projector.name,
        config.projector.stack,
        config.projector.hidden,
        config.projector.num_queries,
        config.projector.qformer_layers,
        config.projector.qformer_heads,
    ) == ("qformer", 8, 64, 2, 1, 4)
    t = config.trainable
    assert (t.encoder, t.projector, t.llm, t.lora_r, t.lora_alpha, t.lora_dropout) == (
        "lora",
        False,
        "frozen",
        4,
        8,
        0.1,
    )
    assert t.lora_targets == ("q_proj", "v_proj") and t.encoder_lora_targets == ("k_proj",)
    with pytest.raises(ValueError, match="projector.hidden .64. must be divisible by projector.qformer_heads .3."):
        train_module.model_config_for(
            TrainConfig(model="tiny", projector="qformer", projector_hidden=64, projector_heads=3)
        )


# ---- the matrix: each LLM frozen, LoRA and fully trained ---------------------------------------------


class Killed(Exception):
    """Stands for SIGKILL right after a checkpoint: nothing after it runs."""


def _killed_after_first_checkpoint(monkeypatch):
    real = train_module.save_checkpoint

    def save_then_die(*args, **kwargs):
        saved = real(*args, **kwargs)
        raise Killed(saved)

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)


def _train_config(standins, corpus, out, llm=None, mode=None, **extra) -> TrainConfig:
    """The run of the matrix: 3 steps, a checkpoint at step 2; ``llm`` picks the stand-ins as flags would."""
    sources = {"encoder_source": str(standins[PAIRS[llm]]), "llm_source": str(standins[llm])} if llm else {}
    values = dict(
        model="tiny",
        recipes=f"manifest:{corpus}",
        tasks="asr",
        dev_split="none",
        output_dir=str(out),
        precision="fp32",
        threads=1,
        batch_size=4,
        max_steps=3,
        log_every=1,
        save_every=2,
        progress=False,
        tensorboard=False,
        plot=False,
        train_llm=mode,
        **sources,
    )
    return TrainConfig(**{**values, **extra})


def _logits(model):
    with torch.no_grad():
        return model(**model.processor.prepare(AUDIOS, PROMPTS)).logits


@pytest.fixture(scope="module")
def movable(standins, tmp_path_factory):
    """A copy of the stand-ins that tests may move away (the session's stay where they are)."""
    root = tmp_path_factory.mktemp("movable") / "models"
    return {name: Path(shutil.copytree(path, root / name)) for name, path in standins.items()}


def test_a_resumed_run_saves_the_users_model_config_not_a_checkpoint_path(corpus, tmp_path, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _killed_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            train_module.train(_train_config(None, corpus, run, mode="lora", keep_checkpoints=1))
    final = train_module.train(_train_config(None, corpus, run, mode="lora", keep_checkpoints=1))
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000003"]  # step 2 was pruned
    for config in (run / "model_config.json", final / "config.json"):
        data = json.loads(config.read_text())
        assert data.get("model", data)["llm"]["tokenizer"] is None  # as an uninterrupted run writes it
    # A new run from the saved config works although the checkpoint it resumed from is gone.
    again = train_module.train(
        _train_config(None, corpus, tmp_path / "again", mode="lora", model=str(run / "model_config.json"), max_steps=1)
    )
    assert (again / "config.json").is_file()


def test_a_resume_takes_the_model_flags_it_is_not_given_from_the_checkpoint(corpus, tmp_path, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _killed_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            train_module.train(_train_config(None, corpus, run, mode="lora", lora_r=4))
    final = train_module.train(_train_config(None, corpus, run))  # no --train-llm, no --lora-r
    config = json.loads((final / "config.json").read_text())["model"]["trainable"]
    assert (config["llm"], config["lora_r"]) == ("lora", 4)
    with pytest.raises(ValueError, match="cannot resume .*train_llm: 'lora' -> 'full'"):  # a flag given still counts
        train_module.train(_train_config(None, corpus, run, mode="full", max_steps=4))


# Resumed losses are compared with an uninterrupted run's in a Latin square (each LLM once, each
# mode once), which keeps the matrix fast; every cell resumes and checks the rest.
COMPARED_WITH_UNINTERRUPTED = {("qwen2.5", "frozen"), ("qwen3", "lora"), ("llama3", "full")}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["frozen", "lora", "full"])
@pytest.mark.parametrize("llm", ["qwen2.5", "qwen3", "llama3"])
def test_train_kill_resume_save_load_merge_generate(movable, corpus, tmp_path, monkeypatch, llm, mode):
    with monkeypatch.context() as patch:
        _killed_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            train_module.train(_train_config(movable, corpus, tmp_path / "killed", llm, mode))
    assert not (tmp_path / "killed" / "model").exists()
    # The resume names no model flag: sources and what trains come from the checkpoint.
    resumed = train_module.train(_train_config(movable, corpus, tmp_path / "killed"))
    losses = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "killed", "train")}
    assert list(losses) == [1, 2, 3] and all(np.isfinite(list(losses.values())))
    saved = json.loads((resumed / "config.json").read_text())["model"]
    # The saved configs are the user's, not a path into a checkpoint that may be pruned.
    assert saved["llm"]["tokenizer"] is None and saved["llm"]["source"] == str(movable[llm])
    assert json.loads((tmp_path / "killed" / "model_config.json").read_text()) == saved
    if (llm, mode) in COMPARED_WITH_UNINTERRUPTED:
        whole = train_module.train(_train_config(movable, corpus, tmp_path / "whole", llm, mode))
        assert losses == {r["step"]: r["loss"] for r in read_metrics(tmp_path / "whole", "train")}
        assert json.loads((whole / "config.json").read_text())["model"] == saved

    # Load with the source directories gone: a saved model needs nothing but itself.
    away = movable[llm].parent.with_name("moved-away")
    movable[llm].parent.rename(away)
    try:
        model = AudioLM.from_pretrained(resumed).eval()
        assert model.config.trainable.llm == mode
        if mode != "full":  # adapters (LoRA, tag-token rows) folded into the weights give the same logits
            merged = AudioLM.from_pretrained(model.save_pretrained(tmp_path / "merged", merge_lora=True)).eval()
            torch.testing.assert_close(_logits(merged), _logits(model), atol=1e-4, rtol=1e-4)
        (text,) = model.processor.batch_decode(
            model.generate(model.processor.prepare(AUDIOS[:1], PROMPTS[:1]), max_new_tokens=4)
        )
        assert isinstance(text, str)
    finally:
        away.rename(movable[llm].parent)


def test_a_resume_with_the_sources_moved_says_where_and_takes_a_new_path(
    movable, corpus, tmp_path, monkeypatch, capsys
):
    run, old = tmp_path / "run", movable["qwen3"]
    model_file = _model_file(tmp_path, encoder=str(movable["whisper-small"]), llm=str(old))
    with monkeypatch.context() as patch:
        _killed_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            train_module.train(_train_config(None, corpus, run, model=model_file))
    new = old.with_name("qwen3-elsewhere")
    old.rename(new)
    try:
        line = _cli_error(capsys, _flags(corpus, run, "--model", model_file))
        assert f"llm.source '{old}' does not exist" in line and "--llm-source" in line
        final = train_module.train(_train_config(None, corpus, run, model=model_file, llm_source=str(new)))
        assert read_metrics(run, "end")[-1]["step"] == 3 and (final / "config.json").is_file()
    finally:
        new.rename(old)
