"""Qwen2-Audio import and export against transformers' own class, on a tiny random model.

The contract: for the same audio and prompt, qaudio's logits equal those of transformers'
``Qwen2AudioForConditionalGeneration`` within ``ATOL`` in float32 (measured: 0.0 for the
import, the same operations in the same order; 7.4e-6 after LoRA fine-tuning and a merged
export), and greedy outputs are identical, for the imported model and, after fine-tuning with
LoRA in qaudio's training loop and exporting, for transformers loading the export.
"""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor

import qaudio.train as train_module
from qaudio.cli import main as cli_main
from qaudio.config import resolve_model_config
from qaudio.convert.qwen2_audio import export_qwen2_audio, import_qwen2_audio
from qaudio.model import AudioLM
from qaudio.tags import TagPath, build_chat_prompt
from qaudio.training.config import TrainConfig
from qaudio.training.metrics_log import read_metrics
from tests.fixtures.qwen2_audio import build_qwen2_audio

ATOL = 1e-4  # float32 logits, qaudio vs transformers
RNG = np.random.default_rng(0)
# Lengths in whole 10 ms hops (see qaudio.convert.qwen2_audio on partial hops): 0.5 s and 2.3 s.
AUDIOS = [(0.1 * RNG.standard_normal(n)).astype(np.float32) for n in (8000, 36800)]
PROMPTS = [
    build_chat_prompt(TagPath("transcript", "transcribe", "wo_itn"), "en"),
    build_chat_prompt(TagPath("analysis", "caption", "caption_clotho"), "unknown"),
]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return build_qwen2_audio(tmp_path_factory.mktemp("qwen2-audio") / "Qwen2-Audio-tiny")


def _hf_logits_and_greedy(directory, audio, prompt, eos_id):
    model = Qwen2AudioForConditionalGeneration.from_pretrained(str(directory), dtype=torch.float32).eval()
    processor = Qwen2AudioProcessor.from_pretrained(str(directory))
    inputs = processor(text=[prompt], audio=[audio], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
        new = model.generate(
            **inputs,
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=eos_id,
            pad_token_id=processor.tokenizer.pad_token_id,
        )[0, inputs["input_ids"].shape[1] :].tolist()
    return inputs["input_ids"], logits, new


def _qaudio_logits_and_greedy(model, audio, prompt):
    batch = model.processor.prepare([audio], [prompt])
    with torch.no_grad():
        logits = model(**batch).logits
    return batch["input_ids"], logits, model.processor.batch_decode(model.generate(batch, max_new_tokens=12))[0]


def _assert_same(model, directory, audio, prompt):
    ids, logits, text = _qaudio_logits_and_greedy(model, audio, prompt)
    hf_ids, hf_logits, hf_new = _hf_logits_and_greedy(directory, audio, prompt, model.processor.tokenizer.eos_token_id)
    assert torch.equal(ids, hf_ids)  # the same audio slots, the same chat turns
    assert (logits - hf_logits).abs().max().item() <= ATOL
    assert text == model.processor.decode(hf_new) and len(hf_new) > 0


@pytest.mark.parametrize("index", [0, 1])
def test_the_import_computes_what_transformers_computes(released, index):
    model = import_qwen2_audio(released).eval()
    assert model.config.encoder.kind == "qwen2-audio" and model.config.prompt_style == "chat"
    _assert_same(model, released, AUDIOS[index], PROMPTS[index])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A manifest of 8 short noise clips with one text target: enough to run the training loop."""
    root = tmp_path_factory.mktemp("corpus")
    lines = []
    for i in range(8):
        n = 4000 + 800 * i
        sf.write(root / f"clip{i}.wav", (0.1 * RNG.standard_normal(n)).astype(np.float32), 16000)
        lines.append(
            json.dumps(
                {
                    "id": f"clip{i}",
                    "audio": str(root / f"clip{i}.wav"),
                    "duration": n / 16000,
                    "task": "asr",
                    "target": "the cat sat on the mat",
                }
            )
        )
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_the_released_model_fine_tunes_in_the_loop_and_exports_to_what_transformers_computes(
    released, corpus, tmp_path
):
    run = tmp_path / "run"
    final = train_module.train(
        TrainConfig(
            model=str(released),
            recipes=f"manifest:{corpus}",
            tasks="asr",
            dev_split="none",
            output_dir=str(run),
            precision="fp32",
            threads=1,
            batch_size=4,
            max_steps=4,
            lr=1e-2,
            warmup=0.0,
            log_every=1,
            save_every=100,
            progress=False,
            tensorboard=False,
            plot=False,
        )
    )
    losses = [r["loss"] for r in read_metrics(run) if r["kind"] == "train"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    model = AudioLM.from_pretrained(final).eval()  # frozen tower, trained projector, LoRA adapters on the LLM
    assert (final / "adapters" / "language_model").is_dir()
    out = export_qwen2_audio(model, tmp_path / "export")  # LoRA merged
    assert json.loads((out / "config.json").read_text())["architectures"] == ["Qwen2AudioForConditionalGeneration"]
    _, info = Qwen2AudioForConditionalGeneration.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for audio, prompt in zip(AUDIOS, PROMPTS):
        _assert_same(model, out, audio, prompt)


def test_a_model_that_does_not_map_is_refused_with_the_reasons(tmp_path):
    from qaudio.config import PRESETS

    model = AudioLM.build(PRESETS["tiny"])
    with pytest.raises(ValueError) as error:
        export_qwen2_audio(model, tmp_path / "export")
    message = str(error.value)
    for reason in ("average-pools", "pad_to_30s false", "'mlp' with stack 4", "'qwen3' model"):
        assert reason in message
    assert not (tmp_path / "export").exists()


def test_the_command_line_and_model_flag_take_the_released_directory(released, tmp_path, capsys):
    out = tmp_path / "imported"
    assert cli_main(["import-model", "qwen2-audio", str(released), str(out), "--train-llm", "frozen"]) == 0
    saved = json.loads((out / "config.json").read_text())["model"]
    assert saved["trainable"]["llm"] == "frozen" and saved["encoder"]["kind"] == "qwen2-audio"
    # The released directory itself is a --model: the same config and the same logits as the import.
    assert resolve_model_config(str(released)).encoder.kind == "qwen2-audio"
    direct, imported = AudioLM.from_pretrained(released).eval(), AudioLM.from_pretrained(out).eval()
    batch = direct.processor.prepare(AUDIOS[:1], PROMPTS[:1])
    with torch.no_grad():
        assert torch.equal(direct(**batch).logits, imported(**batch).logits)
    assert cli_main(["export", str(out), str(tmp_path / "hf"), "--format", "qwen2-audio"]) == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    capsys.readouterr()
    assert cli_main(["import-model", "qwen2-audio", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_tower_frame_count_is_qwen2_audios_for_every_length():
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    from qaudio.config import ModelConfig, with_overrides
    from qaudio.model.lengths import audio_token_count

    config = with_overrides(
        ModelConfig(), encoder={"kind": "qwen2-audio", "pad_to_30s": True}, projector={"name": "linear", "stack": 1}
    )
    mel = torch.arange(1, 3001)
    _, released = Qwen2AudioEncoder._get_feat_extract_output_lengths(None, mel)
    assert torch.equal(audio_token_count(None, config, mel_frames=mel), released)
    assert audio_token_count(16000, config) == 25  # 25 audio tokens per second


def test_the_chat_prompt_puts_the_audio_in_the_user_turn_and_the_suite_asks_in_it():
    from qaudio.prompt import prompt_for
    from qaudio.specs import get_suite

    prompt = prompt_for("asr", style="chat")
    assert prompt.count("<|audio_bos|><|AUDIO|><|audio_eos|>") == 1
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert "user\nAudio 1: <|audio_bos|>" in prompt and "recognize the speech:<|im_end|>" in prompt
    qwen2, qwen = get_suite("qwen2_audio"), get_suite("qwen_audio")
    rows = [(b.recipe, b.split, b.task) for b in qwen.benchmarks]
    assert [(b.recipe, b.split, b.task) for b in qwen2.benchmarks] == rows
    assert {b.profile for b in qwen2.benchmarks if b.task == "asr"} == {"qwen2_audio"}


@pytest.mark.parametrize("pad_to_30s", [False, True])
def test_a_qwen2_audio_kind_tower_batches_as_it_runs_alone(pad_to_30s):
    from qaudio.config import PRESETS, with_overrides

    config = with_overrides(
        PRESETS["tiny"],
        encoder={"kind": "qwen2-audio", "pad_to_30s": pad_to_30s},
        projector={"name": "linear", "stack": 1},
    )
    model = AudioLM.build(config).eval()
    prompts = ["<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>"] * 2
    states, lengths = model.encode(
        **{
            k: v
            for k, v in model.processor.prepare(AUDIOS, prompts).items()
            if k in ("input_features", "feature_lengths")
        }
    )
    assert lengths.tolist() == [12, 57]  # 25 and 115 encoder frames (0.5 s, 2.3 s), pooled in pairs
    for i, audio in enumerate(AUDIOS):
        alone, _ = model.encode(
            **{
                k: v
                for k, v in model.processor.prepare([audio], prompts[:1]).items()
                if k in ("input_features", "feature_lengths")
            }
        )
        assert torch.allclose(states[i, : lengths[i]], alone[0], atol=1e-5)
