"""AudioLM: Whisper encoder -> projector -> causal LLM, with its own collator and generation.

The model is three attributes, as in Qwen2-Audio: ``audio_tower`` (a transformers
``WhisperEncoder``), ``projector`` (one of :data:`qaudio.model.projectors.PROJECTORS`) and
``language_model`` (any transformers causal LM, possibly wrapped by peft). One LLM input is

    <|audio_bos|> <|AUDIO|> x N <|audio_eos|> prompt target <eos>

where N = :func:`qaudio.model.lengths.audio_token_count` of the clip. The projector's outputs
are written into the ``<|AUDIO|>`` slots with ``masked_scatter``, after checking per example
that the slots and the outputs agree (the error prints both counts). The loss covers the
target and ``<eos>`` only: :meth:`prepare` sets every other label to -100, and the forward
pass ignores labels on audio slots and padding whatever they hold.

Speed (the demo trains on 2 CPU cores): with labels, the LM head runs only on the positions
that predict a target token (a few percent of a sequence that is mostly audio slots), and the
forward returns the loss alone; the encoder runs on real lengths; nothing loops over the
batch in Python on the forward path.

Batched generation uses left padding and transformers ``generate`` (greedy, beam search,
sampling, KV cache) on ``inputs_embeds``; transformers 5 returns only the new tokens. Batched
greedy output equals one-by-one output in float32 (tested); in bfloat16 the padded batch can
round differently and flip a near-tie (measured here: 1 clip in 8), so evaluate in float32.

References: Qwen2-Audio (Chu et al., 2024) and transformers ``Qwen2AudioForConditionalGeneration``
for the slot layout and the count check; SALMONN / SLAM-ASR for encoder -> projector -> LLM.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import WhisperFeatureExtractor
from transformers.utils import ModelOutput

from ..audio import SAMPLE_RATE
from ..config import ModelConfig
from ..tags import AUDIO_BOS, AUDIO_EOS, AUDIO_PLACEHOLDER, AUDIO_SLOT
from .checkpoint import load_checkpoint, save_checkpoint
from .encoder import encode, load_audio_tower
from .lengths import HOP_LENGTH, N_FFT, audio_token_count, max_samples, max_seconds, mel_frame_count
from .llm import load_language_model, load_tokenizer
from .projectors import build_projector
from .trainable import apply_trainable, unwrap

IGNORE_INDEX = -100  # label of positions outside the loss (PyTorch's cross_entropy default)
REDUCTIONS = ("mean", "none")


@dataclass
class AudioLMOutput(ModelOutput):
    """``loss``: scalar (reduction "mean") or (B,) (reduction "none"), given labels.
    ``logits``: (B, L, V), only without labels (with labels the head runs on target positions only)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


def _embedding_rms(llm: nn.Module) -> float:
    weight = llm.get_input_embeddings().weight.detach()
    return float(weight.float().pow(2).mean().sqrt())


class AudioLM(nn.Module):
    """The audio-language model; build it with :meth:`build` or :meth:`from_pretrained`."""

    def __init__(self, config: ModelConfig, audio_tower: nn.Module, projector: nn.Module, language_model: nn.Module,
                 tokenizer, feature_extractor: WhisperFeatureExtractor):
        super().__init__()
        self.config = config
        self.audio_tower = audio_tower
        self.projector = projector
        self.language_model = language_model
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.quantization = None  # how the Linear layers are quantized (qaudio.model.quantize.quantize sets it)
        ids = tokenizer.convert_tokens_to_ids([AUDIO_BOS, AUDIO_PLACEHOLDER, AUDIO_EOS])
        if None in ids or (tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids):
            raise ValueError("the tokenizer lacks the audio tokens; build it with qaudio.tags.add_tag_tokens")
        self.audio_bos_id, self.audio_token_id, self.audio_eos_id = ids

    # ---- Construction ------------------------------------------------------------------------

    @classmethod
    def build(cls, config: ModelConfig, tokenizer_texts: Iterable[str] | None = None) -> "AudioLM":
        """A new model from ``config``: pretrained parts loaded, the rest random, trainable parts set.

        ``tokenizer_texts`` are the training texts a from-scratch LLM's byte-level BPE learns
        from (tag tokens are always added); they are ignored for pretrained tokenizers.
        """
        audio_tower, encoder_config = load_audio_tower(config.encoder)
        tokenizer = load_tokenizer(config.llm, tokenizer_texts)
        language_model, llm_config = load_language_model(config.llm, tokenizer)
        projector = build_projector(config.projector, encoder_config.d_model, llm_config.hidden_size,
                                    _embedding_rms(language_model))
        feature_extractor = WhisperFeatureExtractor(feature_size=encoder_config.n_mels)
        resolved = replace(config, encoder=encoder_config, llm=llm_config)
        model = cls(resolved, audio_tower, projector, language_model, tokenizer, feature_extractor)
        apply_trainable(model)
        return model

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> "AudioLM":
        """A model saved by :meth:`save_pretrained`, from a directory or a hub id (float32 unless ``dtype``)."""
        return load_checkpoint(cls, path_or_hub_id, device=device, dtype=dtype)

    def save_pretrained(self, directory: str | Path, merge_lora: bool = False) -> Path:
        """Write config.json, model.safetensors, tokenizer and feature-extractor files; adapters
        under ``adapters/<part>/`` (peft format), or folded into the weights with ``merge_lora``."""
        return save_checkpoint(self, Path(directory), merge_lora=merge_lora)

    # ---- Facts -------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def max_audio_seconds(self) -> float:
        """The longest clip the encoder takes (30.0 for Whisper); longer audio must be split first."""
        return max_seconds(unwrap(self.audio_tower).config.max_source_positions)

    def trainable_parameter_names(self) -> list[str]:
        """Names of the parameters that train, as :func:`qaudio.model.trainable.apply_trainable` set them."""
        return [name for name, p in self.named_parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part and in total, and how many of them train."""
        counts = {name: sum(p.numel() for p in getattr(self, name).parameters())
                  for name in ("audio_tower", "projector", "language_model")}
        counts["total"] = sum(counts.values())
        counts["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts

    def train(self, mode: bool = True) -> "AudioLM":
        """Like nn.Module.train, but frozen parts stay in eval mode (no dropout in what does not learn)."""
        super().train(mode)
        if self.config.trainable.encoder == "frozen":
            self.audio_tower.eval()
        if self.config.trainable.llm == "frozen":
            self.language_model.eval()
        return self

    # ---- The collator ------------------------------------------------------------------------

    def prepare(self, audios: Sequence[np.ndarray], prompts: Sequence[str],
                targets: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Audio (16 kHz mono float arrays) and texts -> model inputs (CPU tensors).

        Keys: ``input_features`` (B, n_mels, T_max) log-mels, ``feature_lengths`` (B,) real mel
        frames, ``input_ids`` and ``attention_mask`` (B, L), and with targets ``labels`` (B, L).
        With targets the batch is right padded (training); without, left padded (generation).
        """
        clips = [self._check_clip(i, audio) for i, audio in enumerate(audios)]
        self._check_texts(len(clips), prompts, targets)
        features, mel_lengths = self._log_mel(clips)
        counts = [int(audio_token_count(None, self.config, mel_frames=m)) for m in mel_lengths]
        text = self._text_batch(counts, prompts, targets)
        return {"input_features": features, "feature_lengths": torch.tensor(mel_lengths), **text}

    def prepare_from_features(self, encoder_states: Sequence[torch.Tensor], prompts: Sequence[str],
                              targets: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Like :meth:`prepare`, from cached encoder outputs: one (T', D_enc) tensor per clip.

        Keys: ``encoder_states`` (B, T'_max, D_enc), zero padded, on the states' device;
        ``encoder_lengths`` (B,); ``input_ids``, ``attention_mask`` and ``labels`` as in prepare.
        """
        width = unwrap(self.audio_tower).config.d_model
        limit = unwrap(self.audio_tower).config.max_source_positions
        for i, s in enumerate(encoder_states):
            if s.dim() != 2 or s.shape[1] != width or not 1 <= s.shape[0] <= limit:
                raise ValueError(f"encoder state {i} has shape {tuple(s.shape)}; expected (frames in 1..{limit}, {width})")
        self._check_texts(len(encoder_states), prompts, targets)
        lengths = [s.shape[0] for s in encoder_states]
        counts = [int(audio_token_count(None, self.config, encoder_frames=n)) for n in lengths]
        states = nn.utils.rnn.pad_sequence(list(encoder_states), batch_first=True)  # (B, T'_max, D)
        text = self._text_batch(counts, prompts, targets)
        return {"encoder_states": states, "encoder_lengths": torch.tensor(lengths), **text}

    def _check_clip(self, index: int, audio) -> np.ndarray:
        clip = np.asarray(audio, dtype=np.float32)
        if clip.ndim != 1:
            raise ValueError(f"audio {index} has shape {clip.shape}; expected 1-D mono samples at {SAMPLE_RATE} Hz")
        longest = max_samples(unwrap(self.audio_tower).config.max_source_positions)
        if len(clip) > longest:
            raise ValueError(f"audio {index} is {len(clip) / SAMPLE_RATE:.2f} s long, longer than the encoder window "
                             f"of {self.max_audio_seconds:.0f} s ({len(clip)} > {longest} samples); split long "
                             "audio into windows first (qaudio.chunking does)")
        if len(clip) < HOP_LENGTH:
            raise ValueError(f"audio {index} has {len(clip)} samples; at least {HOP_LENGTH} (10 ms) are needed")
        if not np.isfinite(clip).all():
            raise ValueError(f"audio {index} contains NaN or infinite samples")
        return clip

    @staticmethod
    def _check_texts(batch: int, prompts: Sequence[str], targets: Sequence[str] | None) -> None:
        if batch == 0:
            raise ValueError("an empty batch: give at least one clip")
        if len(prompts) != batch or (targets is not None and len(targets) != batch):
            raise ValueError(f"{batch} clips but {len(prompts)} prompts"
                             + ("" if targets is None else f" and {len(targets)} targets"))
        for kind, texts in (("prompt", prompts), ("target", targets or [])):
            for i, text in enumerate(texts):
                if not isinstance(text, str):
                    raise ValueError(f"{kind} {i} must be a string, got {type(text).__name__}")
                # A prompt may say where the audio goes, once, as AUDIO_SLOT (the chat style does).
                rest = text.replace(AUDIO_SLOT, "", 1) if kind == "prompt" else text
                for token in (AUDIO_BOS, AUDIO_PLACEHOLDER, AUDIO_EOS):
                    if token in rest:
                        raise ValueError(f"{kind} {i} contains {token}; the audio slots are added by prepare() "
                                         f"(a prompt may hold {AUDIO_SLOT} once, where the audio goes)")

    def _log_mel(self, clips: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
        """Whisper log-mels (B, n_mels, T) and each clip's real frames, independent of the batch."""
        mel_lengths = [int(mel_frame_count(len(c))) for c in clips]
        extractor = self.feature_extractor
        if self.config.encoder.pad_to_30s:
            out = extractor(clips, sampling_rate=SAMPLE_RATE, padding="max_length", return_tensors="pt")
            return out["input_features"], mel_lengths  # (B, n_mels, 3000)
        # Every clip gets at least N_FFT zeros after it, so its last windows and its peak (for
        # Whisper's max - 8 dB floor) are what 30 s of zero padding would give, whatever the batch.
        width = max(len(c) for c in clips) + N_FFT
        padded = np.zeros((len(clips), width), dtype=np.float32)
        for i, clip in enumerate(clips):
            padded[i, : len(clip)] = clip
        out = extractor(padded, sampling_rate=SAMPLE_RATE, padding="longest", max_length=width, truncation=False,
                        return_tensors="pt")
        features = out["input_features"][..., : max(mel_lengths)]  # (B, n_mels, T_max)
        valid = torch.arange(features.shape[-1]) < torch.tensor(mel_lengths)[:, None]  # (B, T_max)
        return features * valid[:, None, :], mel_lengths

    def _text_batch(self, counts: list[int], prompts: Sequence[str], targets: Sequence[str] | None) -> dict:
        """input_ids, attention_mask (and labels): audio slots + prompt (+ target + eos), padded."""
        tok = self.tokenizer
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []  # Llama-style LLMs expect it first
        # Text before the audio (a chat prompt's turns up to AUDIO_SLOT) and after it, tokenized apart.
        before, after = zip(*(p.split(AUDIO_SLOT, 1) if AUDIO_SLOT in p else ("", p) for p in prompts))
        before_ids = tok(list(before), add_special_tokens=False)["input_ids"]
        prompt_ids = tok(list(after), add_special_tokens=False)["input_ids"]
        target_ids = tok(list(targets), add_special_tokens=False)["input_ids"] if targets is not None else None
        rows, label_rows = [], []
        for i, (n, prompt) in enumerate(zip(counts, prompt_ids)):
            head = [*bos, *before_ids[i], self.audio_bos_id, *[self.audio_token_id] * n, self.audio_eos_id, *prompt]
            tail = [*target_ids[i], tok.eos_token_id] if target_ids is not None else []
            rows.append(head + tail)
            label_rows.append([IGNORE_INDEX] * len(head) + tail)
        length = max(len(r) for r in rows)
        if length > self.config.llm.max_positions:
            raise ValueError(f"a sequence of {length} tokens exceeds the LLM's {self.config.llm.max_positions} positions")
        input_ids = torch.full((len(rows), length), tok.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        for i, (row, label_row) in enumerate(zip(rows, label_rows)):
            span = slice(0, len(row)) if targets is not None else slice(length - len(row), length)
            input_ids[i, span] = torch.tensor(row)
            attention_mask[i, span] = 1
            labels[i, span] = torch.tensor(label_row)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if targets is not None:
            batch["labels"] = labels
        return batch

    # ---- The forward pass --------------------------------------------------------------------

    def encode(self, input_features: torch.Tensor, feature_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio tower alone: log-mels (B, n_mels, T) -> states (B, T', D_enc) zeroed past each
        clip, and lengths (B,) in encoder frames. No gradient when the encoder is frozen."""
        encoder = unwrap(self.audio_tower)
        trains = self.config.trainable.encoder != "frozen"
        with torch.set_grad_enabled(torch.is_grad_enabled() and trains):
            features = input_features.to(device=self.device, dtype=encoder.conv1.weight.dtype)
            return encode(encoder, features, feature_lengths.to(self.device), self.config.encoder.pad_to_30s,
                          self.config.encoder.kind)

    def _audio_states(self, input_features, feature_lengths, encoder_states, encoder_lengths):
        if input_features is not None and encoder_states is not None:
            raise ValueError("give input_features or encoder_states, not both")
        if input_features is not None:
            if feature_lengths is None:
                raise ValueError("input_features need feature_lengths (the real mel frames of each clip)")
            return self.encode(input_features, feature_lengths)
        if encoder_states is not None:
            if encoder_lengths is None:
                raise ValueError("encoder_states need encoder_lengths (the real frames of each clip)")
            return encoder_states, encoder_lengths.to(encoder_states.device)
        return None, None

    def _audio_slots(self, input_ids: torch.Tensor) -> torch.Tensor:
        return input_ids == self.audio_token_id  # (B, L)

    def _inputs_embeds(self, input_ids: torch.Tensor, states: torch.Tensor | None,
                       lengths: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with the projector's outputs written into the <|AUDIO|> slots: (B, L, H)."""
        embeds = unwrap(self.language_model).get_input_embeddings()(input_ids)  # (B, L, H)
        slots = self._audio_slots(input_ids)  # (B, L)
        per_example = slots.sum(dim=1)  # (B,)
        if states is None:
            if bool(per_example.any()):
                raise ValueError(f"input_ids hold {per_example.tolist()} {AUDIO_PLACEHOLDER} slots per example but no "
                                 "audio was given (input_features or encoder_states)")
            return embeds
        if states.shape[0] != input_ids.shape[0]:
            raise ValueError(f"{states.shape[0]} clips of audio for {input_ids.shape[0]} token sequences")
        dtype = next(self.projector.parameters()).dtype
        audio, counts = self.projector(states.to(dtype), lengths)  # (B, N, H), (B,)
        if not torch.equal(per_example, counts.to(per_example.device)):
            bad = int((per_example != counts.to(per_example.device)).nonzero()[0, 0])
            raise ValueError(
                f"audio slots and audio features disagree: example {bad} has {int(per_example[bad])} "
                f"{AUDIO_PLACEHOLDER} slots in input_ids but its audio gives {int(counts[bad])} projector outputs "
                "(audio_token_count); build batches with AudioLM.prepare / prepare_from_features")
        valid = torch.arange(audio.shape[1], device=audio.device) < counts[:, None]  # (B, N)
        return embeds.masked_scatter(slots[..., None], audio[valid].to(embeds.dtype))  # (B, L, H)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        feature_lengths: torch.Tensor | None = None,
        encoder_states: torch.Tensor | None = None,
        encoder_lengths: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> AudioLMOutput:
        """Loss with ``labels`` (mean over the batch's target tokens, or per example with
        reduction="none": (B,), each the mean over that example's target tokens); logits
        (B, L, V) without. Audio comes as log-mels or as cached encoder states."""
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        states, lengths = self._audio_states(input_features, feature_lengths, encoder_states, encoder_lengths)
        embeds = self._inputs_embeds(input_ids, states, lengths)  # (B, L, H)
        # Positions count real tokens only, so a left-padded sequence gets the same positions as alone.
        position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
        llm = unwrap(self.language_model)
        hidden = llm.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                                   use_cache=False).last_hidden_state  # (B, L, H)
        head = llm.get_output_embeddings()
        if labels is None:
            return AudioLMOutput(logits=head(hidden))  # (B, L, V)
        return AudioLMOutput(loss=self._loss(hidden, head, input_ids, attention_mask, labels, reduction))

    def _loss(self, hidden, head, input_ids, attention_mask, labels, reduction) -> torch.Tensor:
        # Whatever labels say, audio slots and padding are never targets.
        audio = self._audio_slots(input_ids) | (input_ids == self.audio_bos_id) | (input_ids == self.audio_eos_id)
        labels = labels.masked_fill(audio | (attention_mask == 0), IGNORE_INDEX)
        targets = labels[:, 1:]  # (B, L-1): the token at t+1 is predicted at t
        keep = targets != IGNORE_INDEX  # (B, L-1)
        if not bool(keep.any()):
            raise ValueError("the labels hold no target token; prepare(audios, prompts, targets) sets them")
        logits = head(hidden[:, :-1][keep])  # (N, V): the head runs where a target is predicted, nowhere else
        token_loss = F.cross_entropy(logits.float(), targets[keep], reduction="none")  # (N,)
        if reduction == "mean":
            return token_loss.mean()
        rows = keep.nonzero()[:, 0]  # (N,) the example of each target token, in the same order
        total = torch.zeros(labels.shape[0], device=token_loss.device).index_add(0, rows, token_loss)  # (B,)
        return total / keep.sum(dim=1).clamp(min=1)

    # ---- Generation --------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor], max_new_tokens: int = 128, num_beams: int = 1,
                 do_sample: bool = False, **kwargs) -> list[str]:
        """Decoded new text per example (tag and time tokens kept, padding and end token removed).

        ``batch`` comes from :meth:`prepare` / :meth:`prepare_from_features` without targets
        (left padded). Other keyword arguments go to transformers ``generate`` (temperature,
        top_p, num_return_sequences, ...).
        """
        if "labels" in batch:
            raise ValueError("generate takes a batch prepared without targets (left padded), but this one has labels")
        device = self.device
        batch = {k: v.to(device) for k, v in batch.items()}
        attention_mask = batch["attention_mask"]
        if bool((attention_mask[:, -1] == 0).any()):
            raise ValueError("generate needs left padding; prepare(audios, prompts) without targets gives it")
        states, lengths = self._audio_states(batch.get("input_features"), batch.get("feature_lengths"),
                                             batch.get("encoder_states"), batch.get("encoder_lengths"))
        embeds = self._inputs_embeds(batch["input_ids"], states, lengths)  # (B, L, H)
        was_training = self.training
        self.eval()
        try:
            new_tokens = unwrap(self.language_model).generate(
                inputs_embeds=embeds, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                num_beams=num_beams, do_sample=do_sample, pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id, **kwargs)  # (B * n, new): transformers 5 gives new tokens only
        finally:
            self.train(was_training)
        return [self._decode(row) for row in new_tokens.tolist()]

    def _decode(self, ids: list[int]) -> str:
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        if eos in ids:
            ids = ids[: ids.index(eos)]
        ids = [i for i in ids if i != pad]
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
