"""Pretrained parts and checkpoints, offline: local directories stand in for hub ids (one code path).

A tiny random Whisper and a tiny Qwen3 with its own tokenizer (no tags) are saved as Hugging Face
directories and loaded by path, as a hub id would be; then what trains (frozen LLM: the tag rows
only; LoRA), and save/load round trips with adapters kept separate or merged.
"""

import json

import numpy as np
import pytest
import torch
from transformers import (
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
    WhisperConfig,
    WhisperForConditionalGeneration,
)

from qaudio.config import PRESETS, resolve_model_config, with_overrides
from qaudio.model import AudioLM
from qaudio.model.trainable import merged_state_dict, tag_token_ids, unwrap
from qaudio.tags import all_special_tokens

SR = 16000
RNG = np.random.default_rng(0)
AUDIOS = [(0.1 * RNG.standard_normal(n)).astype(np.float32) for n in (9000, 5000)]
PROMPTS = ["<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>", "<|startofanalysis|><|de|>"]
TARGETS = ["hello world", "<|0.00|>the<|0.20|> cat"]


def _tokenizer_without_tags():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        ["hello world", "the cat sat"],
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """{"whisper": dir, "llm": dir (untied head), "llm_tied": dir}: saved like hub checkpoints."""
    root = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    whisper = WhisperForConditionalGeneration(
        WhisperConfig(
            num_mel_bins=80,
            d_model=32,
            encoder_layers=1,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=64,
            vocab_size=50,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
    )
    whisper.save_pretrained(root / "whisper")
    tokenizer = _tokenizer_without_tags()
    for name, tied in (("llm", False), ("llm_tied", True)):
        llm = Qwen3ForCausalLM(
            Qwen3Config(
                vocab_size=len(tokenizer),
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=1,
                head_dim=16,
                intermediate_size=64,
                tie_word_embeddings=tied,
                eos_token_id=tokenizer.eos_token_id,
            )
        )
        llm.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return {"whisper": root / "whisper", "llm": root / "llm", "llm_tied": root / "llm_tied"}


def _config(dirs, llm="frozen", encoder="frozen", llm_dir="llm"):
    return with_overrides(
        PRESETS["tiny"],
        encoder={"source": str(dirs["whisper"])},
        llm={"source": str(dirs[llm_dir])},
        trainable={"llm": llm, "encoder": encoder},
    )


def _train_steps(model, steps=2):
    """A few AdamW steps with weight decay, so adapters and rows move away from their start."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    batch = model.processor.prepare(AUDIOS, PROMPTS, TARGETS)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        # DDP waits for a gradient of every trainable parameter: none may be left without one.
        assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        optimizer.step()
    return model.eval()


def _logits(model):
    with torch.no_grad():
        return model(**model.processor.prepare(AUDIOS, PROMPTS)).logits


def test_build_from_local_directories(dirs):
    model = AudioLM.build(_config(dirs))
    reference = Qwen3ForCausalLM.from_pretrained(dirs["llm"])
    old_rows = reference.get_input_embeddings().weight.shape[0]
    llm = merged_state_dict(model.language_model)
    # Tags were added as special tokens and the embedding and untied head grew to fit them.
    assert len(model.processor.tokenizer) == old_rows + len(all_special_tokens())
    assert llm["model.embed_tokens.weight"].shape[0] == llm["lm_head.weight"].shape[0] == len(model.processor.tokenizer)
    assert torch.equal(llm["model.embed_tokens.weight"][:old_rows], reference.get_input_embeddings().weight)
    assert torch.equal(llm["model.layers.0.mlp.up_proj.weight"], reference.model.layers[0].mlp.up_proj.weight)
    encoder = WhisperForConditionalGeneration.from_pretrained(dirs["whisper"]).model.encoder
    assert torch.equal(unwrap(model.audio_tower).layers[0].fc1.weight, encoder.layers[0].fc1.weight)
    # The saved config is the resolved one: sizes read from the checkpoints.
    assert (model.config.encoder.d_model, model.config.encoder.layers) == (32, 1)
    assert (model.config.llm.arch, model.config.llm.hidden_size, model.config.llm.tie_embeddings) == (
        "qwen3",
        32,
        False,
    )
    assert model.projector.fc2.out_features == 32
    tok = model.processor.tokenizer
    assert tok.convert_ids_to_tokens(tok("<|0.00|>the", add_special_tokens=False)["input_ids"])[0] == "<|0.00|>"


@pytest.mark.parametrize("llm_dir", ["llm", "llm_tied"])
def test_frozen_llm_trains_only_the_tag_rows(dirs, llm_dir):
    torch.manual_seed(0)
    model = AudioLM.build(_config(dirs, llm="frozen", llm_dir=llm_dir))
    names = model.trainable_parameter_names()
    llm_names = [n for n in names if n.startswith("language_model.")]
    assert all("trainable_tokens_delta" in n for n in llm_names)
    assert len(llm_names) == (1 if llm_dir == "llm_tied" else 2)  # a tied head shares the embedding's rows
    assert all(n.startswith(("projector.", "language_model.")) for n in names)
    before = {k: v.clone() for k, v in merged_state_dict(model.language_model).items()}
    _train_steps(model)
    after = merged_state_dict(model.language_model)
    tags = torch.tensor(tag_token_ids(model.processor.tokenizer))
    others = torch.ones(len(model.processor.tokenizer), dtype=torch.bool)
    others[tags] = False
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(after[key][others], before[key][others]), key  # no gradient, no weight decay
        assert not torch.equal(after[key][tags], before[key][tags]), key  # the tag rows learned
    assert torch.equal(
        after["model.layers.0.self_attn.q_proj.weight"], before["model.layers.0.self_attn.q_proj.weight"]
    )


def test_lora_trains_adapters_and_tag_rows(dirs):
    torch.manual_seed(0)
    model = AudioLM.build(_config(dirs, llm="lora", encoder="lora"))
    names = model.trainable_parameter_names()
    llm_lora = {
        n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names if n.startswith("language_model.") and ".lora_" in n
    }
    encoder_lora = {
        n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names if n.startswith("audio_tower.") and ".lora_" in n
    }
    assert llm_lora == set(model.config.trainable.lora_targets)
    assert encoder_lora == set(model.config.trainable.encoder_lora_targets)
    assert any("trainable_tokens_delta" in n for n in names)
    assert not any(n.endswith("base_layer.weight") for n in names)
    base = unwrap(model.language_model).model.layers[0].self_attn.q_proj.base_layer.weight.clone()
    _train_steps(model)
    assert torch.equal(unwrap(model.language_model).model.layers[0].self_attn.q_proj.base_layer.weight, base)


def _check_round_trip(model, tmp_path, has_adapters):
    reference = _logits(model)
    saved = model.save_pretrained(tmp_path / "kept")
    assert (saved / "adapters").is_dir() == has_adapters
    if has_adapters:
        for part in json.loads((saved / "config.json").read_text())["adapters"]:
            assert (saved / "adapters" / part / "adapter_model.safetensors").is_file()
            assert (saved / "adapters" / part / "adapter_config.json").is_file()
    assert not list(saved.rglob("*.py"))  # no source code in checkpoints
    assert resolve_model_config(saved) == model.config
    loaded = AudioLM.from_pretrained(str(saved)).eval()
    assert loaded.trainable_parameter_names() == model.trainable_parameter_names()
    assert torch.equal(_logits(loaded), reference)

    merged = model.save_pretrained(tmp_path / "merged", merge_lora=True)
    assert not (merged / "adapters").exists()
    loaded = AudioLM.from_pretrained(merged).eval()
    torch.testing.assert_close(_logits(loaded), reference, atol=1e-5, rtol=1e-5)
    return loaded


def test_round_trip_full_scratch_model(tmp_path):
    torch.manual_seed(0)
    model = _train_steps(AudioLM.build(PRESETS["tiny"], TARGETS), steps=1)
    loaded = _check_round_trip(model, tmp_path, has_adapters=False)
    assert loaded.processor.tokenizer.get_vocab() == model.processor.tokenizer.get_vocab()
    assert loaded.processor.feature_extractor.feature_size == 80
    # Tied input embedding and head stay one tensor after loading.
    llm = unwrap(loaded.language_model)
    assert llm.get_output_embeddings().weight is llm.get_input_embeddings().weight


@pytest.mark.parametrize("llm, encoder", [("frozen", "frozen"), ("lora", "lora")])
def test_round_trip_with_adapters(dirs, tmp_path, llm, encoder):
    torch.manual_seed(0)
    model = _train_steps(AudioLM.build(_config(dirs, llm=llm, encoder=encoder)))
    _check_round_trip(model, tmp_path, has_adapters=True)


def test_frozen_llm_with_tied_embeddings_saves_and_loads(tmp_path):
    """The tied head shares the embedding's trainable tag rows: saved once, tied again on loading."""
    torch.manual_seed(0)
    model = _train_steps(AudioLM.build(with_overrides(PRESETS["tiny"], trainable={"llm": "frozen"}), TARGETS))
    loaded = _check_round_trip(model, tmp_path, has_adapters=True)  # returns the merged copy, loaded
    kept = AudioLM.from_pretrained(tmp_path / "kept")
    llm = unwrap(kept.language_model)
    embed, head = llm.get_input_embeddings(), llm.get_output_embeddings()
    assert head.trainable_tokens_delta["default"] is embed.trainable_tokens_delta["default"]
    assert loaded.trainable_parameter_names() == model.trainable_parameter_names()


def test_from_pretrained_dtype_and_errors(tmp_path):
    torch.manual_seed(0)
    saved = AudioLM.build(PRESETS["tiny"]).save_pretrained(tmp_path / "m")
    loaded = AudioLM.from_pretrained(saved, dtype="bfloat16")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    with pytest.raises(FileNotFoundError, match="neither a saved qaudio model directory nor a hub id"):
        AudioLM.from_pretrained(tmp_path / "missing" / "deeper" / "path")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        AudioLM.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        AudioLM.from_pretrained(saved, dtype="float8")


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_scratch_llm_of_other_architectures(arch):
    torch.manual_seed(0)
    model = AudioLM.build(with_overrides(PRESETS["tiny"], llm={"arch": arch}), TARGETS)
    assert unwrap(model.language_model).config.model_type == arch and model.config.llm.arch == arch
    with torch.no_grad():
        assert torch.isfinite(model(**model.processor.prepare(AUDIOS, PROMPTS, TARGETS)).loss)


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="llm.arch 'qwen99' is not a transformers model type"):
        AudioLM.build(with_overrides(PRESETS["tiny"], llm={"arch": "qwen99"}))
