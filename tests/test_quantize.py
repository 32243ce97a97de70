"""Quantized inference (qaudio.model.quantize) on the tiny preset: logits close to float32 within
stated tolerances, a save/load round trip that gives the same logits, and clear refusals.

Tolerances, measured on this tiny model (largest |logit| about 0.9): int8 (torch dynamic,
per-channel weights, per-batch activations) moves a logit by at most 0.013, NF4 by at most
0.09; the bounds below leave about 2x room and still fail if a layer is quantized wrongly
(a transposed or unscaled weight moves logits by the logits' own size).
"""

import numpy as np
import pytest
import torch

from qaudio.config import PRESETS, with_overrides
from qaudio.model import AudioLM
from qaudio.model.quantize import Quantization, has_quantized_layers, quantize, weight_bytes

SR = 16000
AUDIOS = [
    (0.3 * np.sin(2 * np.pi * f * np.arange(int(SR * s)) / SR)).astype(np.float32) for f, s in ((300, 1.0), (700, 0.6))
]
PROMPTS = [
    "<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>",
    "<|startofanalysis|><|unknown|><|caption|><|en|><|notimestamps|><|caption_plain|>",
]
TOLERANCE = {"int8": 0.03, "int4": 0.2}  # largest |logit - float32 logit| allowed


def _model(llm: str = "full") -> AudioLM:
    torch.manual_seed(0)
    return AudioLM.build(with_overrides(PRESETS["tiny"], trainable={"llm": llm}), ["one two three"]).eval()


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**model.processor.prepare(AUDIOS, PROMPTS)).logits


@pytest.fixture(scope="module")
def reference():
    model = _model()
    return model, _logits(model)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_logits_stay_close_to_float32_and_survive_save_and_load(reference, mode, tmp_path):
    _base, expected = reference
    model = _model()  # the same seed: the same weights as the reference
    before = weight_bytes(model.language_model)
    quantize(model, mode)
    assert has_quantized_layers(model.language_model) and not has_quantized_layers(model.audio_tower)
    logits = _logits(model)
    error = (logits - expected).abs().max().item()
    assert 0 < error < TOLERANCE[mode], error  # changed (quantized), but only a little
    assert weight_bytes(model.language_model) < before
    head = model.language_model.get_output_embeddings()
    assert type(head) is torch.nn.Linear and head.weight is model.language_model.get_input_embeddings().weight

    loaded = AudioLM.from_pretrained(model.save_pretrained(tmp_path / mode)).eval()
    assert loaded.quantization == model.quantization == Quantization(mode, model.quantization.backend, ("llm",))
    assert has_quantized_layers(loaded.language_model)
    torch.testing.assert_close(_logits(loaded), logits, atol=1e-6, rtol=0)  # the same codes after the round trip
    if mode == "int4":  # bitsandbytes' CPU repacking (bf16 scales, another layout) would break that on AVX512-BF16
        nf4 = [m for m in model.language_model.modules() if type(m).__name__ == "Linear4bit"]
        assert nf4 and not any(m.support_avx512bf16_for_cpu for m in nf4)
        assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in nf4)


def test_adapters_are_merged_before_quantizing_and_the_encoder_can_be_int8(tmp_path):
    model = _model("lora")
    expected = _logits(model)
    quantize(model, "int8", parts=("llm", "encoder", "projector"))
    assert all(has_quantized_layers(part) for part in (model.language_model, model.audio_tower, model.projector))
    assert not any("lora_" in name for name, _ in model.named_modules())
    assert (_logits(model) - expected).abs().max().item() < TOLERANCE["int8"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: quantize(m, "int2"), r"quantization mode 'int2' is not supported; expected one of: int8, int4"),
        (
            lambda m: quantize(m, "int4", backend="torch"),
            r"backend 'torch' does not do int4; int4 runs through "
            r"bitsandbytes, torchao",
        ),
        (lambda m: quantize(m, "int4", backend="torchao"), r"needs a CUDA GPU.*on CPU use backend='bitsandbytes'"),
        (lambda m: quantize(m, "int8", parts=("decoder",)), r"quantized parts \('decoder',\).*llm, encoder, projector"),
    ],
)
def test_unsupported_requests_say_why_and_what_to_do(call, message):
    model = _model()
    with pytest.raises((ValueError, ImportError), match=message):
        call(model)
    assert not has_quantized_layers(model)


def test_load_takes_a_quantize_argument(reference, tmp_path):
    import qaudio

    base, _ = reference
    directory = base.save_pretrained(tmp_path / "base")
    pipeline = qaudio.load(str(directory), device="cpu", quantize="int8")
    assert has_quantized_layers(pipeline.model.language_model)
