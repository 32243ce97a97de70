"""The causal LLM and its tokenizer: from the hub, from a directory, or built from scratch.

* ``LLMConfig.source == "scratch"``: the architecture named by ``arch`` (any transformers
  ``model_type`` with the usual Llama-style config names: qwen3, qwen2, llama, mistral, ...) is
  built from the config's sizes with random weights. Its tokenizer is a byte-level BPE trained
  here with ``tokenizers`` on the training texts, with ``<|endoftext|>`` (end of text and
  padding) and every qaudio tag as special tokens, or the tokenizer ``LLMConfig.tokenizer`` names.
* a hub id or a local directory: ``AutoModelForCausalLM.from_pretrained`` on the string (one code
  path for both) and its tokenizer. The tags are added as special tokens and the embedding
  matrix is resized when the tokenizer outgrows it; transformers' ``mean_resizing`` starts the
  new rows at the mean of the old ones. How the new rows train while the LLM is frozen is
  decided in :mod:`qaudio.model.trainable`.

References: Sennrich et al. (2016) and GPT-2's byte-level BPE (Radford et al., 2019), as
implemented by Hugging Face ``tokenizers``; transformers ``PreTrainedModel.resize_token_embeddings``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, cast

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from ..config import SCRATCH, LLMConfig
from ..tags import add_tag_tokens, all_special_tokens
from .sources import Source, check_source, fetch_errors, pretrained_config

END_OF_TEXT = "<|endoftext|>"  # the scratch tokenizer's end-of-sequence and padding token


def train_bpe_tokenizer(texts: Iterable[str] | None, vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE of at most ``vocab_size`` bytes + merges, plus ``<|endoftext|>`` and every tag.

    With no texts it is the bare 256-byte alphabet (every string still encodes). Tags are special
    tokens, never split by the pre-tokenizer, so ``<|0.32|>`` is one id.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tags = all_special_tokens()
    specials = [END_OF_TEXT, *tags]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(specials),  # the trainer counts special tokens in the vocabulary
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts or []), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token=END_OF_TEXT, pad_token=END_OF_TEXT, additional_special_tokens=tags
    )


CAUSAL_LM = "a decoder-only causal LM (Qwen2, Qwen3, Llama, Mistral, ...)"
# The config names qaudio reads (Llama-style); a causal LM without one of them is refused up front.
_LLAMA_STYLE_NAMES = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)


def _llm_source(config: LLMConfig) -> Source:
    return Source(config.source, "llm.source", "--llm-source", CAUSAL_LM)


def _tokenizer_source(config: LLMConfig) -> Source:
    if config.tokenizer is None:
        return Source(config.source, "llm.source", "--llm-source", f"{CAUSAL_LM} with its tokenizer")
    return Source(config.tokenizer, "llm.tokenizer", "--llm-tokenizer", "a tokenizer", marker="tokenizer_config.json")


def causal_lm_config(config: LLMConfig) -> PretrainedConfig:
    """The transformers config of ``llm.source``, refused unless it is a decoder-only causal LM qaudio can read."""
    source = _llm_source(config)
    hf = pretrained_config(source)
    if hf.is_encoder_decoder or hf.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        hint = (
            " A Whisper checkpoint is the audio encoder: it belongs in encoder.source (--encoder-source)"
            if hf.model_type == "whisper"
            else ""
        )
        raise ValueError(
            f"{source} holds a {hf.model_type!r} model, which is not a decoder-only causal LM; expected "
            f"{CAUSAL_LM}.{hint}"
        )
    text = hf.get_text_config()
    missing = [name for name in _LLAMA_STYLE_NAMES if getattr(text, name, None) is None]
    if missing:
        raise ValueError(
            f"{source}: this {hf.model_type} config lacks {', '.join(missing)}; qaudio reads Llama-style "
            f"config names, so expected {CAUSAL_LM}"
        )
    return hf


def load_tokenizer(config: LLMConfig, tokenizer_texts: Iterable[str] | None = None) -> PreTrainedTokenizerBase:
    """The LLM's tokenizer with every qaudio tag added, and an end and a padding token set."""
    tokenizer: PreTrainedTokenizerBase
    if config.source == SCRATCH and config.tokenizer is None:
        tokenizer = train_bpe_tokenizer(tokenizer_texts, config.bpe_vocab_size)
    else:
        if config.source != SCRATCH:
            causal_lm_config(config)  # a wrong LLM source fails here, before its tokenizer is looked for
        source = _tokenizer_source(config)
        check_source(source)
        with fetch_errors(source):
            tokenizer = AutoTokenizer.from_pretrained(source.value)
        add_tag_tokens(tokenizer)
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"the tokenizer of {config.tokenizer or config.source} has no end-of-sequence token; "
            "qaudio ends every target with it"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked everywhere, so any id serves
    return tokenizer


def _scratch_model(config: LLMConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    try:
        hf_config = AutoConfig.for_model(
            config.arch,
            vocab_size=len(tokenizer),
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_kv_heads,
            head_dim=config.hidden_size // config.num_heads,  # Qwen3 would default to 128
            intermediate_size=config.intermediate_size,
            tie_word_embeddings=config.tie_embeddings,
            max_position_embeddings=config.max_positions,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    except ValueError as error:
        raise ValueError(f"llm.arch {config.arch!r} is not a transformers model type ({error})") from None
    return AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)


def appended_tag_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids of the tags :func:`qaudio.tags.add_tag_tokens` appended after the LLM's own tokens.

    They are the run of tag ids that ends the vocabulary; a tag the LLM's tokenizer already had
    sits among its own tokens and keeps its pretrained row.
    """
    tags = set(cast(list[int], tokenizer.convert_tokens_to_ids(all_special_tokens())))  # a list in, a list out
    first = len(tokenizer)
    while first - 1 in tags:
        first -= 1
    return list(range(first, len(tokenizer)))


def _init_tag_rows(model: PreTrainedModel, ids: list[int]) -> None:
    """Start the appended tag rows at the mean of the rows of the LLM's own tokens (ids below them)."""
    if not ids:
        return
    tables: list[Any] = [model.get_input_embeddings().weight]  # Parameters (nn.Module types them loosely)
    head = model.get_output_embeddings()
    if head is not None and head.weight is not tables[0]:
        tables.append(head.weight)
    with torch.no_grad():
        for weight in tables:  # (rows, H)
            weight[ids] = weight[: ids[0]].mean(dim=0)  # padding rows past the tokenizer are not averaged


def _pretrained_model(config: LLMConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    hf = causal_lm_config(config)
    with fetch_errors(_llm_source(config)):
        model = AutoModelForCausalLM.from_pretrained(config.source, config=hf, dtype=torch.float32)  # cast later
    if len(tokenizer) > cast(torch.Tensor, model.get_input_embeddings().weight).shape[0]:
        # The tags are new tokens: grow the embedding (and an untied head) to the tokenizer.
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    # Some tags may land on padding rows the checkpoint already had: every tag row is set here.
    _init_tag_rows(model, appended_tag_ids(tokenizer))
    return model


# qaudio computes logits as output_head(decoder(...)) to run the head on target positions only;
# LLMs that change logits after the head in their forward are refused rather than run wrongly.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale")


def _check_supported(config: LLMConfig, model: PreTrainedModel) -> None:
    hf = model.config.get_text_config()
    for name in _LOGIT_TRANSFORMS:
        if getattr(hf, name, None) is not None:
            raise ValueError(
                f"{config.source}: this {hf.model_type} model applies {name} to its logits, which qaudio's "
                "loss does not reproduce; use a Llama-style LLM (Qwen2, Qwen3, Llama, Mistral, ...)"
            )


def _resolved(config: LLMConfig, model: PreTrainedModel) -> LLMConfig:
    """The config with the model's real sizes, as saved with checkpoints."""
    hf = model.config.get_text_config()
    try:
        return replace(
            config,
            arch=hf.model_type,
            hidden_size=hf.hidden_size,
            num_layers=hf.num_hidden_layers,
            num_heads=hf.num_attention_heads,
            num_kv_heads=hf.num_key_value_heads or hf.num_attention_heads,
            intermediate_size=hf.intermediate_size,
            tie_embeddings=bool(hf.tie_word_embeddings),
            max_positions=hf.max_position_embeddings,
        )
    except AttributeError as error:
        raise ValueError(
            f"{config.source}: qaudio reads Llama-style config names (hidden_size, num_hidden_layers, "
            f"...), and this {hf.model_type} config lacks one: {error}"
        ) from None


def load_language_model(config: LLMConfig, tokenizer: PreTrainedTokenizerBase) -> tuple[PreTrainedModel, LLMConfig]:
    """The causal LM named by ``config.source`` (vocabulary fitting ``tokenizer``) and the resolved config."""
    build = _scratch_model if config.source == SCRATCH else _pretrained_model
    model = build(config, tokenizer)
    _check_supported(config, model)
    return model, _resolved(config, model)
