"""Whisper's configuration, generation settings and tokenizer, derived from a CTranslate2 model.

The tensors' shapes give the sizes, the vocabulary gives the special-token ids (tiny.en and the
multilingual models number them differently), and ``config.json`` the suppressed tokens and
alignment heads. What transformers needs to run the model is written out here:
``WhisperConfig``, the ``GenerationConfig`` that makes ``generate`` transcribe, and a
``WhisperTokenizer`` whose ids match the vocabulary one for one.

References: transformers ``models/whisper`` (``configuration_whisper.py``,
``tokenization_whisper.py``); the Hugging Face Whisper checkpoints' ``generation_config.json``;
OpenAI Whisper's ``model.py`` (multilinguality), ``decoding.py`` and ``tokenizer.py``;
CTranslate2 ``specs/whisper_spec.py`` for the runtime flags checked here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .ctranslate2 import CT2_ACTIVATIONS, TOKENIZER_FILE, CT2Model, CTranslate2FormatError

MULTILINGUAL_MIN_VOCAB = 51865  # OpenAI whisper/model.py: is_multilingual = n_vocab >= 51865
MAX_INITIAL_TIMESTAMP_INDEX = 50  # OpenAI decoding.py: max_initial_timestamp 1.0 s / 0.02 s

if TYPE_CHECKING:
    from transformers import GenerationConfig, WhisperConfig, WhisperTokenizer


def is_multilingual(vocab_size: int) -> bool:
    """English-only checkpoints (tiny.en, ...) have 51864 tokens; multilingual ones 51865 or more."""
    return vocab_size >= MULTILINGUAL_MIN_VOCAB


@dataclass(frozen=True)
class WhisperTokens:
    """Whisper's special token ids, looked up by name in the vocabulary (tiny.en and the
    multilingual models number them differently)."""

    eot: int  # <|endoftext|>: eos, pad and bos
    sot: int  # <|startoftranscript|>: the decoder start token
    translate: int
    transcribe: int
    sot_prev: int  # <|startofprev|>: prompts from earlier windows
    no_timestamps: int  # the last special token; timestamps follow it
    languages: dict[str, int]  # "<|en|>" -> id, the tokens between sot and translate

    @classmethod
    def from_vocabulary(cls, vocabulary: list[str]) -> WhisperTokens:
        index = {token: i for i, token in enumerate(vocabulary) if token}
        names = (
            "<|endoftext|>", "<|startoftranscript|>", "<|translate|>",
            "<|transcribe|>", "<|startofprev|>", "<|notimestamps|>",
        )  # fmt: skip
        missing = [n for n in names if n not in index]
        if missing:
            raise CTranslate2FormatError(
                f"the vocabulary lacks Whisper's special tokens {missing}: is this a Whisper model?"
            )
        eot, sot, translate, transcribe, sot_prev, no_timestamps = (index[n] for n in names)
        languages = {vocabulary[i]: i for i in range(sot + 1, translate)}
        return cls(eot, sot, translate, transcribe, sot_prev, no_timestamps, languages)


def _layer_count(ct2: CT2Model, side: str) -> int:
    indices = {int(m.group(1)) for n in ct2.variables if (m := re.match(rf"{side}/layer_(\d+)/", n))}
    if not indices or sorted(indices) != list(range(len(indices))):
        raise CTranslate2FormatError(f"model.bin: {side} layers are missing or not numbered 0..N-1: {sorted(indices)}")
    return len(indices)


def _check_whisper_layout(ct2: CT2Model) -> None:
    """Refuse CTranslate2 models whose runtime flags differ from what Whisper's HF code computes."""
    if ct2.spec != "WhisperSpec":
        raise CTranslate2FormatError(f"model.bin holds a {ct2.spec!r}, not a 'WhisperSpec'")
    expected = {
        "decoder/pre_norm": 1,  # layer norm before each block, as Whisper
        "decoder/alibi": 0,  # Whisper has learned positions, no ALiBi
        "decoder/scale_embeddings": 0,  # no sqrt(d_model) factor on the token embeddings
        "decoder/start_from_zero_embedding": 0,
    }
    for name, want in expected.items():
        if name in ct2 and ct2.scalar(name) != want:
            raise CTranslate2FormatError(f"model.bin: {name} = {ct2.scalar(name)}, but Whisper needs {want}")


def whisper_config(ct2: CT2Model, vocabulary: list[str], ct2_config: dict) -> WhisperConfig:
    """A ``WhisperConfig`` from the tensors' shapes, the head counts and the vocabulary."""
    from transformers import WhisperConfig

    _check_whisper_layout(ct2)
    vocab_size, d_model = ct2.raw("decoder/embeddings/weight").shape
    if len(vocabulary) != vocab_size:
        raise CTranslate2FormatError(
            f"the vocabulary has {len(vocabulary)} tokens, but the embeddings have {vocab_size} rows"
        )
    activation = int(ct2.scalar("decoder/activation")) if "decoder/activation" in ct2 else 3  # Whisper's GELU
    if activation not in CT2_ACTIVATIONS:
        raise CTranslate2FormatError(
            f"model.bin: unknown activation id {activation}; expected one of {CT2_ACTIVATIONS}"
        )
    heads = {side: int(ct2.scalar(f"{side}/num_heads")) for side in ("encoder", "decoder")}
    for side, n in heads.items():
        if d_model % n:
            raise CTranslate2FormatError(f"model.bin: d_model {d_model} is not divisible by {side}/num_heads {n}")
    tokens = WhisperTokens.from_vocabulary(vocabulary)
    return WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=ct2.raw("encoder/conv1/weight").shape[1],  # conv1: (d_model, n_mels, 3)
        d_model=d_model,
        encoder_layers=_layer_count(ct2, "encoder"),
        decoder_layers=_layer_count(ct2, "decoder"),
        encoder_attention_heads=heads["encoder"],
        decoder_attention_heads=heads["decoder"],
        encoder_ffn_dim=ct2.raw("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=ct2.raw("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=ct2.raw("encoder/position_encodings/encodings").shape[0],  # 1500 frames = 30 s
        max_target_positions=ct2.raw("decoder/position_encodings/encodings").shape[0],  # 448 tokens
        activation_function=CT2_ACTIVATIONS[activation],
        pad_token_id=tokens.eot,
        bos_token_id=tokens.eot,
        eos_token_id=tokens.eot,
        decoder_start_token_id=tokens.sot,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        # The output projection is tied when CTranslate2 stored it as an alias of the embeddings.
        tie_word_embeddings=_projection_is_tied(ct2),
        architectures=["WhisperForConditionalGeneration"],
    )


def _projection_is_tied(ct2: CT2Model) -> bool:
    if "decoder/projection/weight" not in ct2:
        raise CTranslate2FormatError("model.bin has no decoder/projection/weight")
    return ct2.resolve("decoder/projection/weight") == "decoder/embeddings/weight" or np.array_equal(
        ct2.raw("decoder/projection/weight"), ct2.raw("decoder/embeddings/weight")
    )


def whisper_generation_config(config: WhisperConfig, vocabulary: list[str], ct2_config: dict) -> GenerationConfig:
    """The ``GenerationConfig`` that makes ``model.generate`` transcribe.

    English-only models start ``<|startoftranscript|><|notimestamps|>`` (added because
    ``no_timestamps_token_id`` is set). Multilingual models detect the language, then
    transcribe unless ``task="translate"`` or a ``language`` is passed. ``forced_decoder_ids``,
    deprecated in transformers 5, is not written: these fields replace it.
    """
    from transformers import GenerationConfig

    tokens = WhisperTokens.from_vocabulary(vocabulary)
    multilingual = is_multilingual(config.vocab_size)
    fields: dict[str, Any] = {
        "decoder_start_token_id": tokens.sot,
        "bos_token_id": tokens.eot,
        "eos_token_id": tokens.eot,
        "pad_token_id": tokens.eot,
        "max_length": config.max_target_positions,
        "suppress_tokens": config.suppress_tokens,
        "begin_suppress_tokens": config.begin_suppress_tokens,
        "no_timestamps_token_id": tokens.no_timestamps,
        "prev_sot_token_id": tokens.sot_prev,
        "max_initial_timestamp_index": MAX_INITIAL_TIMESTAMP_INDEX,
        "return_timestamps": False,
        "is_multilingual": multilingual,
    }
    if "alignment_heads" in ct2_config:
        fields["alignment_heads"] = [list(pair) for pair in ct2_config["alignment_heads"]]
    if multilingual:
        # Only multilingual models get lang_to_id: its presence makes generate detect the language.
        fields.update(
            lang_to_id=tokens.languages,
            task_to_id={"transcribe": tokens.transcribe, "translate": tokens.translate},
            task="transcribe",
        )
    return GenerationConfig(**fields)


# ---- The tokenizer -------------------------------------------------------------------------


def build_tokenizer(directory: Path, vocabulary: list[str]) -> WhisperTokenizer:
    """Whisper's tokenizer from the package's ``tokenizer.json``, made to cover the vocabulary.

    faster-whisper's tokenizer.json stops at ``<|notimestamps|>``; the timestamp tokens
    ``<|0.00|>``..``<|30.00|>`` that follow it in the vocabulary are added (as in the HF
    checkpoints, not special), and the other specials are declared so that
    ``skip_special_tokens`` and ``decode_with_timestamps`` work.
    """
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer

    path = directory / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {TOKENIZER_FILE}; copy Whisper's tokenizer.json next to model.bin")
    spec = json.loads(path.read_text(encoding="utf-8"))
    # Declared as extra specials, so skip_special_tokens drops them; <|endoftext|> is bos/eos/unk.
    specials = [t["content"] for t in spec.get("added_tokens", []) if t.get("special")]
    specials = [t for t in specials if t != "<|endoftext|>"]
    tokenizer = WhisperTokenizer(tokenizer_file=str(path), extra_special_tokens=specials)
    tokens = WhisperTokens.from_vocabulary(vocabulary)
    timestamps = vocabulary[tokens.no_timestamps + 1 :]
    known = tokenizer.get_vocab()
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in timestamps if t not in known])
    # Every id must mean the same token in both; a mismatch would garble every transcript.
    ids = cast(list[int], tokenizer.convert_tokens_to_ids([t for t in vocabulary if t]))  # a list in, a list out
    wrong = [
        (i, t) for (i, t), got in zip([(i, t) for i, t in enumerate(vocabulary) if t], ids, strict=True) if got != i
    ]
    if wrong or len(tokenizer) > len(vocabulary):
        raise CTranslate2FormatError(
            f"{path} disagrees with the vocabulary: {len(wrong)} tokens have other ids (first: {wrong[:3]}); "
            f"tokenizer size {len(tokenizer)}, vocabulary size {len(vocabulary)}"
        )
    return tokenizer


def english_normalizer_file() -> Path | None:
    """OpenAI's English spelling map (``normalizer.json`` in HF checkpoints), from whisper-normalizer."""
    try:
        from importlib.resources import files

        path = Path(str(files("whisper_normalizer").joinpath("normalizers/english.json")))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None
