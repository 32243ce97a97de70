"""The two systems the benchmarks compare, built at the same sizes from the same weights.

The peer is the stack users fine-tune instead (LLaMA-Factory and ms-swift both wrap it):
Hugging Face ``Qwen2AudioForConditionalGeneration`` fed by ``Qwen2AudioProcessor``, which
pads every clip to 30 s of log-mels (3000 frames), runs the whole 30-s window through the
encoder, average-pools it 2x (25 audio tokens per second of real audio) and a linear projector.

Fairness, so that a ratio measures the design and nothing else:

* **Same sizes, same weights.** The peer's audio tower and LLM are built by the very functions
  qaudio builds its own with (:func:`qaudio.model.encoder.load_audio_tower`,
  :func:`qaudio.model.llm.load_language_model`) and their weights are loaded into the peer's
  modules with ``strict=True``, which fails unless every shape agrees. Both use one tokenizer
  (qaudio's byte-level BPE with the tag and audio tokens). The LM head is untied on both sides
  because Qwen2-Audio never ties it. Only the projectors differ, by design (qaudio: its
  configured projector; the peer: avg-pool + linear).
* **Same trainable set and optimizer**: frozen encoder, trained projector and full LLM; AdamW
  (lr 1e-3, betas (0.9, 0.98), weight decay 0.01 on matrices, qaudio's parameter groups) and
  gradient clipping at 1.0 on both.
* **Same inputs**: the same seeded clips and transcripts, in the same batches and order.
  Each side builds its inputs its own way (qaudio: :meth:`AudioProcessor.prepare`, real-length
  log-mels; the peer: its processor, 30-s log-mels and audio-token expansion), and that
  feature extraction is counted in the step time of both. The targets' labels are laid out by
  one function on both sides (:func:`qaudio.model.processor.sequence_batch`), and the peer's
  generated ids are decoded by qaudio's processor.

Reference: transformers ``models/qwen2_audio`` (modeling and processing).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import torch

from benchmarks.clips import Clip
from qaudio.audio import SAMPLE_RATE
from qaudio.config import SCRATCH, TINY_RANDOM, ModelConfig, TrainableConfig, resolve_model_config
from qaudio.model.processor import sequence_batch
from qaudio.tags import AUDIO_BOS, AUDIO_EOS, AUDIO_PLACEHOLDER

# ---- Sizes and the two systems ---------------------------------------------------------------


def model_config(size: str, stack: int | None = None) -> ModelConfig:
    """A preset's sizes with random weights: what both systems are built at.

    The encoder is a random Whisper encoder of the preset's width, layers and heads; the LLM is
    built from scratch at the preset's sizes (qaudio's BPE tokenizer); the head is untied (the
    peer cannot tie it); the trainable set is fixed: frozen encoder, projector, full LLM.
    ``stack`` overrides the projector's downsampling (2 gives the peer's 25 tokens per second).
    """
    config = resolve_model_config(size)
    projector = config.projector if stack is None else replace(config.projector, stack=stack)
    return replace(
        config,
        encoder=replace(config.encoder, source=TINY_RANDOM, pad_to_30s=False),
        projector=projector,
        llm=replace(config.llm, source=SCRATCH, tokenizer=None, tie_embeddings=False),
        trainable=TrainableConfig(encoder="frozen", projector=True, llm="full"),
    )


def build_qaudio(config: ModelConfig, texts: Iterable[str], seed: int):
    """qaudio's AudioLM at ``config``, its BPE learnt from ``texts``, and its AudioProcessor."""
    from qaudio.model import AudioLM

    torch.manual_seed(seed)
    model = AudioLM.build(config, tokenizer_texts=list(texts))
    return model, model.processor


@dataclass
class Peer:
    """Qwen2AudioForConditionalGeneration with its processor, at qaudio's sizes and weights."""

    model: torch.nn.Module  # Qwen2AudioForConditionalGeneration
    processor: object  # Qwen2AudioProcessor
    tokenizer: object  # the processor's tokenizer (a copy of qaudio's)
    text: object  # qaudio's AudioProcessor on the same tokenizer: decodes the peer's ids as qaudio's own


def build_peer(config: ModelConfig, texts: Iterable[str], seed: int) -> Peer:
    """The peer at ``config``'s encoder and LLM sizes, with qaudio's encoder and LLM weights.

    Built from the same qaudio functions and seed as :func:`build_qaudio`, so the encoder and
    LLM start from the same weights; ``load_state_dict(strict=True)`` proves the shapes agree.
    """
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    from qaudio.model import AudioProcessor
    from qaudio.model.encoder import load_audio_tower
    from qaudio.model.llm import load_language_model, load_tokenizer

    torch.manual_seed(seed)
    encoder, enc = load_audio_tower(config.encoder)  # a transformers WhisperEncoder
    tokenizer = load_tokenizer(config.llm, list(texts))
    llm, _ = load_language_model(config.llm, tokenizer)  # e.g. Qwen3ForCausalLM
    audio_config = Qwen2AudioEncoderConfig(
        num_mel_bins=enc.n_mels,
        d_model=enc.d_model,
        encoder_layers=enc.layers,
        encoder_attention_heads=enc.heads,
        encoder_ffn_dim=encoder.config.encoder_ffn_dim,
        max_source_positions=encoder.config.max_source_positions,
    )
    peer_config = Qwen2AudioConfig(
        audio_config=audio_config,
        text_config=llm.config.to_dict(),
        audio_token_index=tokenizer.convert_tokens_to_ids(AUDIO_PLACEHOLDER),
    )
    model = Qwen2AudioForConditionalGeneration(peer_config)
    model.model.audio_tower.load_state_dict(encoder.state_dict(), strict=True)
    model.model.language_model.load_state_dict(llm.get_decoder().state_dict(), strict=True)
    model.lm_head.load_state_dict(llm.get_output_embeddings().state_dict(), strict=True)
    del encoder, llm
    # The trainable set of qaudio's model: frozen encoder; projector, LLM and head train.
    model.requires_grad_(True)
    model.model.audio_tower.requires_grad_(False)
    peer_tokenizer = copy.deepcopy(tokenizer)  # the processor sets its padding side
    feature_extractor = WhisperFeatureExtractor(feature_size=enc.n_mels)
    processor = Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=peer_tokenizer)
    return Peer(model, processor, peer_tokenizer, AudioProcessor(tokenizer, feature_extractor, config))


def peer_inputs(peer: Peer, clips: Sequence[Clip], prompt: str, train: bool) -> dict[str, torch.Tensor]:
    """The peer's batch, built its way: 30-s log-mels and the processor's audio-token expansion.

    Training (``train``): prompt + target + eos, right padded, labels -100 on the prompt and the
    audio slots (how LLaMA-Factory masks them). Generation: the prompt, left padded.
    """
    tok = peer.tokenizer
    tok.padding_side = "right" if train else "left"
    text = f"{AUDIO_BOS}{AUDIO_PLACEHOLDER}{AUDIO_EOS}{prompt}"
    enc = peer.processor(
        text=[text] * len(clips),
        audio=[c.samples for c in clips],
        sampling_rate=SAMPLE_RATE,
        padding=True,
        return_tensors="pt",
    )
    if not train:
        return dict(enc)
    targets = tok([c.text for c in clips], add_special_tokens=False)["input_ids"]
    heads = [ids[mask.bool()].tolist() for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
    tails = [[*target, tok.eos_token_id] for target in targets]
    batch = sequence_batch(heads, tails, tok.pad_token_id)  # qaudio's layout: labels on the tails only
    return {
        **batch,
        "input_features": enc["input_features"],  # (B, n_mels, 3000): always 30 s
        "feature_attention_mask": enc["feature_attention_mask"],
    }  # (B, 3000)


def peer_audio_tokens(peer: Peer, seconds: float) -> int:
    """Audio tokens the peer gives a clip: its processor's formula on the real mel frames."""
    frames = torch.tensor(int(seconds * SAMPLE_RATE) // 160)  # Whisper's 10 ms hop
    return int(peer.model.model.audio_tower._get_feat_extract_output_lengths(frames)[1])


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
