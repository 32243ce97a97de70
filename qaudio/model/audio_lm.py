"""AudioLM: Whisper encoder -> projector -> causal LLM: the forward pass, the loss and generation.

The model is three attributes, as in Qwen2-Audio: ``audio_tower`` (a transformers
``WhisperEncoder``), ``projector`` (one of :data:`qaudio.model.projectors.PROJECTORS`) and
``language_model`` (any transformers causal LM, possibly wrapped by peft). One LLM input is

    <|audio_bos|> <|AUDIO|> x N <|audio_eos|> prompt target <eos>

where N = :func:`qaudio.model.lengths.audio_token_count` of the clip. The projector's outputs
are written into the ``<|AUDIO|>`` slots with ``masked_scatter``, after checking per example
that the slots and the outputs agree (the error prints both counts). Turning audio and text
into these tensors, and generated ids back into text, is the :class:`~.processor.AudioProcessor`'s
work (processor.py). The forward pass and ``generate`` use only the processor's token ids
(``model.token_ids``); the model keeps its processor (``model.processor``) so that saving and
loading write and read it beside the weights. The loss covers the target and ``<eos>`` only: the
processor sets every other label to -100, and the forward pass ignores labels on audio slots
and padding whatever they hold (:func:`~.processor.target_labels`).

The loss comes back undivided: per example, the summed token NLL (``loss_sum``) and the number
of target tokens (``target_tokens``), so each caller divides once, by what it means (the
training objective by the batch's tokens, a label's likelihood not at all); ``loss`` is their
batch mean, for callers that want one number.

Speed (the demo trains on 2 CPU cores): with labels, the LM head runs only on the positions
that predict a target token (a few percent of a sequence that is mostly audio slots), and the
forward returns the loss sums alone (no logits); the encoder runs on real lengths; nothing loops over the
batch in Python on the forward path.

Batched generation uses left padding and transformers ``generate`` (greedy, beam search,
sampling, KV cache) on ``inputs_embeds``; transformers 5 returns only the new tokens. Batched
greedy output equals one-by-one output in float32 (tested); in bfloat16 the padded batch can
round differently and flip a near-tie (measured here: 1 clip in 8), so evaluate in float32.

Second audio towers (``ModelConfig.towers``, e.g. AST for sound events) live in ``towers`` (an
``nn.ModuleList``, empty for a Whisper-only model, which then has exactly the modules and
weights it had before): their frames are aligned to the Whisper tower's and concatenated to its
states before the projector (:mod:`qaudio.model.towers`), so the audio-token count is unchanged.

References: Qwen2-Audio (Chu et al., 2024) and transformers ``Qwen2AudioForConditionalGeneration``
for the slot layout and the count check; SALMONN / SLAM-ASR for encoder -> projector -> LLM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase, WhisperFeatureExtractor
from transformers.utils import ModelOutput

from ..config import ModelConfig
from ..tags import AUDIO_PLACEHOLDER, TIME_STEP
from .checkpoint import load_checkpoint, save_checkpoint
from .ctc import ctc_loss
from .encoder import encode, load_audio_tower
from .lengths import max_seconds, slots_seconds
from .llm import load_language_model, load_tokenizer
from .processor import IGNORE_INDEX, AudioProcessor, target_labels
from .projectors import build_projector
from .timestamp_rules import TimestampRules, TimestampVocabulary
from .towers import align_to_whisper, check_windows, encode_tower, fuse, load_towers, tower_keys
from .trainable import apply_trainable, unwrap

if TYPE_CHECKING:
    from .quantize import Quantization


@dataclass
class AudioLMOutput(ModelOutput):
    """Given labels: ``loss_sum`` (B,) summed NLL of each example's target tokens (float32),
    ``target_tokens`` (B,) how many there are, and ``loss`` their batch mean
    (``loss_sum.sum() / target_tokens.sum()``). Without labels: ``logits`` (B, L, V) (with
    labels the head runs on target positions only, so there are no logits)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    loss_sum: torch.Tensor | None = None
    target_tokens: torch.Tensor | None = None
    # Given ctc_targets: the auxiliary CTC loss of the audio slots against the clips' transcripts
    # (qaudio.model.ctc), per transcript token.
    ctc_loss: torch.Tensor | None = None


def _embedding_rms(llm: PreTrainedModel) -> float:
    weight = cast(torch.Tensor, llm.get_input_embeddings().weight).detach()
    return float(weight.float().pow(2).mean().sqrt())


class AudioLM(nn.Module):
    """The audio-language model; build it with :meth:`build` or :meth:`from_pretrained`."""

    def __init__(
        self,
        config: ModelConfig,
        audio_tower: nn.Module,
        projector: nn.Module,
        language_model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        feature_extractor: WhisperFeatureExtractor,
        towers: nn.ModuleList | None = None,
        tower_extractors: Sequence[Any] = (),
    ):
        super().__init__()
        self.config = config
        self.audio_tower = audio_tower
        # The second audio towers of config.towers, in order (empty: Whisper alone); no parameters when empty.
        self.towers = towers if towers is not None else nn.ModuleList()
        if len(self.towers) != len(config.towers):
            raise ValueError(f"the config names {len(config.towers)} second tower(s) but {len(self.towers)} were given")
        self.projector = projector
        # Any: a transformers causal LM, or peft's wrapper of one (their methods are not nn.Module's)
        self.language_model: Any = language_model
        self.processor = AudioProcessor(tokenizer, feature_extractor, config, tower_extractors)
        self.token_ids = self.processor.token_ids  # the ids the forward pass and generate need
        self.quantization: Quantization | None = (
            None  # how the Linear layers are quantized (qaudio.model.quantize.quantize sets it)
        )

    # ---- Construction ------------------------------------------------------------------------

    @classmethod
    def build(cls, config: ModelConfig, tokenizer_texts: Iterable[str] | None = None) -> AudioLM:
        """A new model from ``config``: pretrained parts loaded, the rest random, trainable parts set.

        ``tokenizer_texts`` are the training texts a from-scratch LLM's byte-level BPE learns
        from (tag tokens are always added); they are ignored for pretrained tokenizers.
        """
        audio_tower, encoder_config = load_audio_tower(config.encoder)
        towers, tower_configs, tower_extractors = load_towers(config.towers)
        tokenizer = load_tokenizer(config.llm, tokenizer_texts)
        language_model, llm_config = load_language_model(config.llm, tokenizer)
        resolved = replace(config, encoder=encoder_config, llm=llm_config, towers=tower_configs)
        projector = build_projector(
            config.projector, resolved.audio_width, llm_config.hidden_size, _embedding_rms(language_model)
        )
        feature_extractor = WhisperFeatureExtractor(feature_size=encoder_config.n_mels)
        model = cls(
            resolved, audio_tower, projector, language_model, tokenizer, feature_extractor, towers, tower_extractors
        )
        apply_trainable(model)
        return model

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | Path,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> AudioLM:
        """A model saved by :meth:`save_pretrained`, from a directory or a hub id (float32 unless ``dtype``)."""
        return load_checkpoint(cls, path_or_hub_id, device=device, dtype=dtype)

    def save_pretrained(self, directory: str | Path, merge_lora: bool = False) -> Path:
        """Write config.json, model.safetensors and the processor's files (tokenizer, feature
        extractor); adapters under ``adapters/<part>/`` (peft format), or folded into the weights
        with ``merge_lora``."""
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
        counts = {
            name: sum(p.numel() for p in getattr(self, name).parameters())
            for name in ("audio_tower", "projector", "language_model")
        }
        if len(self.towers):  # a key only where there are towers, so Whisper-only reports read as before
            counts["towers"] = sum(p.numel() for p in self.towers.parameters())
        counts["total"] = sum(counts.values())
        counts["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts

    def train(self, mode: bool = True) -> AudioLM:
        """Like nn.Module.train, but frozen parts stay in eval mode (no dropout in what does not learn)."""
        super().train(mode)
        if self.config.trainable.encoder == "frozen":
            self.audio_tower.eval()
        for tower, tower_config in zip(self.towers, self.config.towers, strict=True):
            if tower_config.train == "frozen":
                tower.eval()
        if self.config.trainable.llm == "frozen":
            self.language_model.eval()
        return self

    # ---- The forward pass --------------------------------------------------------------------

    def encode(
        self, input_features: torch.Tensor, feature_lengths: torch.Tensor, **tower_inputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio towers alone: log-mels (B, n_mels, T) -> states (B, T', D_enc) zeroed past each
        clip, and lengths (B,) in encoder frames. No gradient when the encoder is frozen.

        With second towers, ``tower_inputs`` are their ``tower_features_<i>`` / ``tower_windows_<i>``
        (from :meth:`AudioProcessor.prepare`), and D_enc is the fused width (``config.audio_width``)."""
        encoder = unwrap(self.audio_tower)
        trains = self.config.trainable.encoder != "frozen"
        with torch.set_grad_enabled(torch.is_grad_enabled() and trains):
            features = input_features.to(device=self.device, dtype=encoder.conv1.weight.dtype)
            states, lengths = encode(
                encoder,
                features,
                feature_lengths.to(self.device),
                self.config.encoder.pad_to_30s,
                self.config.encoder.kind,
            )
        expected = tower_keys(len(self.towers))
        if sorted(tower_inputs) != sorted(expected):
            raise ValueError(
                f"this model's second towers need the inputs {expected or 'none'}, got {sorted(tower_inputs) or 'none'}; "
                "AudioProcessor.prepare makes them"
            )
        if not expected:
            return states, lengths
        aligned = []
        for i, (tower, tower_config) in enumerate(zip(self.towers, self.config.towers, strict=True)):
            windows = tower_inputs[f"tower_windows_{i}"].to(self.device)
            check_windows(windows, lengths, self.config, i)
            dtype = next(tower.parameters()).dtype
            with torch.set_grad_enabled(torch.is_grad_enabled() and tower_config.train != "frozen"):
                columns = encode_tower(
                    tower, tower_config, tower_inputs[f"tower_features_{i}"].to(self.device, dtype), windows
                )  # (B, W, columns, D_i)
                aligned.append(align_to_whisper(columns, windows, states.shape[1], self.config, tower_config))
        fused = fuse(states, aligned)  # (B, T', D_whisper + sum D_i)
        valid = torch.arange(fused.shape[1], device=fused.device) < lengths[:, None]  # (B, T')
        return fused * valid[..., None].to(fused.dtype), lengths  # padding -> 0, as encode() gives

    def _audio_states(self, input_features, feature_lengths, encoder_states, encoder_lengths, tower_inputs=None):
        tower_inputs = tower_inputs or {}
        if input_features is not None and encoder_states is not None:
            raise ValueError("give input_features or encoder_states, not both")
        if input_features is not None:
            if feature_lengths is None:
                raise ValueError("input_features need feature_lengths (the real mel frames of each clip)")
            return self.encode(input_features, feature_lengths, **tower_inputs)
        if tower_inputs:
            raise ValueError(
                f"{sorted(tower_inputs)} came without input_features; cached encoder_states already hold every tower"
            )
        if encoder_states is not None:
            if encoder_lengths is None:
                raise ValueError("encoder_states need encoder_lengths (the real frames of each clip)")
            return encoder_states, encoder_lengths.to(encoder_states.device)
        return None, None

    def _audio_slots(self, input_ids: torch.Tensor) -> torch.Tensor:
        return input_ids == self.token_ids.audio  # (B, L)

    def _project(
        self, states: torch.Tensor | None, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The projector's outputs (B, N, H) and their real counts (B,); None without audio."""
        if states is None:
            return None
        dtype = next(self.projector.parameters()).dtype
        return self.projector(states.to(dtype), lengths)

    def _inputs_embeds(
        self, input_ids: torch.Tensor, projected: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """Token embeddings with the projector's outputs (:meth:`_project`) written into the
        <|AUDIO|> slots: (B, L, H)."""
        embeds = unwrap(self.language_model).get_input_embeddings()(input_ids)  # (B, L, H)
        slots = self._audio_slots(input_ids)  # (B, L)
        per_example = slots.sum(dim=1)  # (B,)
        if projected is None:
            if bool(per_example.any()):
                raise ValueError(
                    f"input_ids hold {per_example.tolist()} {AUDIO_PLACEHOLDER} slots per example but no "
                    "audio was given (input_features or encoder_states)"
                )
            return embeds
        audio, counts = projected  # (B, N, H), (B,)
        if audio.shape[0] != input_ids.shape[0]:
            raise ValueError(f"{audio.shape[0]} clips of audio for {input_ids.shape[0]} token sequences")
        if not torch.equal(per_example, counts.to(per_example.device)):
            bad = int((per_example != counts.to(per_example.device)).nonzero()[0, 0])
            raise ValueError(
                f"audio slots and audio features disagree: example {bad} has {int(per_example[bad])} "
                f"{AUDIO_PLACEHOLDER} slots in input_ids but its audio gives {int(counts[bad])} projector outputs "
                "(audio_token_count); build batches with AudioProcessor.prepare / prepare_from_features"
            )
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
        ctc_targets: torch.Tensor | None = None,
        ctc_lengths: torch.Tensor | None = None,
        **tower_inputs: torch.Tensor,
    ) -> AudioLMOutput:
        """With ``labels``: the per-example loss sum and target-token count (see
        :class:`AudioLMOutput`); without: logits (B, L, V). Audio comes as log-mels (with the
        second towers' ``tower_features_<i>`` / ``tower_windows_<i>``) or as cached encoder states.
        With ``ctc_targets`` (B, S) and ``ctc_lengths`` (B,), the transcripts' token ids (length 0
        where a clip has none), the output also holds the auxiliary CTC loss (:mod:`.ctc`)."""
        states, lengths = self._audio_states(
            input_features, feature_lengths, encoder_states, encoder_lengths, tower_inputs
        )
        projected = self._project(states, lengths)
        embeds = self._inputs_embeds(input_ids, projected)  # (B, L, H)
        # Positions count real tokens only, so a left-padded sequence gets the same positions as alone.
        position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
        llm = unwrap(self.language_model)
        hidden = llm.get_decoder()(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state  # (B, L, H)
        head = llm.get_output_embeddings()
        if labels is None:
            return AudioLMOutput(logits=head(hidden))  # (B, L, V)
        loss_sum, target_tokens = self._loss(hidden, head, input_ids, attention_mask, labels)
        out = AudioLMOutput(loss=loss_sum.sum() / target_tokens.sum(), loss_sum=loss_sum, target_tokens=target_tokens)
        if ctc_targets is not None:
            if projected is None or ctc_lengths is None:
                raise ValueError("ctc_targets need audio and ctc_lengths (the transcript tokens of each clip)")
            out.ctc_loss = ctc_loss(
                *projected, llm.get_input_embeddings().weight, ctc_targets, ctc_lengths, blank=self.token_ids.pad
            )
        return out

    def _loss(
        self,
        hidden: torch.Tensor,
        head: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed token NLL (B,) float32 and target tokens (B,) long per example."""
        labels = target_labels(input_ids, attention_mask, labels, self.token_ids)  # audio and padding never targets
        targets = labels[:, 1:]  # (B, L-1): the token at t+1 is predicted at t
        keep = targets != IGNORE_INDEX  # (B, L-1)
        if not bool(keep.any()):
            raise ValueError(
                "the labels hold no target token; AudioProcessor.prepare(audios, prompts, targets) sets them"
            )
        logits = head(hidden[:, :-1][keep])  # (N, V): the head runs where a target is predicted, nowhere else
        token_loss = F.cross_entropy(logits.float(), targets[keep], reduction="none")  # (N,)
        rows = keep.nonzero()[:, 0]  # (N,) the example of each target token, in the same order
        loss_sum = torch.zeros(labels.shape[0], device=token_loss.device).index_add(0, rows, token_loss)  # (B,)
        return loss_sum, keep.sum(dim=1)  # (B,), (B,)

    # ---- Generation --------------------------------------------------------------------------

    @cached_property
    def _timestamp_vocabulary(self) -> TimestampVocabulary | None:
        """The tokenizer as the timestamp grammar needs it; made at the first timestamped generate."""
        return TimestampVocabulary.of(self.processor.tokenizer)

    def _timestamp_rules(self, input_ids: torch.Tensor) -> TimestampRules | None:
        """The timestamp grammar for the rows of ``input_ids`` whose prompt asks for timestamps; None if none does."""
        flag = self.token_ids.timestamps
        timestamped = (input_ids == flag).any(dim=1) if flag is not None else None  # (B,)
        if timestamped is None or not bool(timestamped.any()) or self._timestamp_vocabulary is None:
            return None
        vocabulary = self._timestamp_vocabulary
        audio_end = slots_seconds((input_ids == self.token_ids.audio).sum(dim=1), self.config)  # (B,) seconds
        last_step = (audio_end / TIME_STEP).round().long().clamp(max=vocabulary.last_step)
        return TimestampRules(vocabulary, last_step.where(timestamped, -1))

    @torch.no_grad()
    def generate(
        self,
        batch: dict[str, torch.Tensor],
        max_new_tokens: int = 128,
        num_beams: int = 1,
        do_sample: bool = False,
        **kwargs: Any,
    ) -> torch.Tensor:
        """The new token ids, (B * num_return_sequences, new) on the model's device; rows that
        ended early are padded. ``AudioProcessor.batch_decode`` turns them into text.

        ``batch`` comes from :meth:`AudioProcessor.prepare` / ``prepare_from_features`` without
        targets (left padded). Other keyword arguments go to transformers ``generate``
        (temperature, top_p, num_return_sequences, ...). Rows whose prompt asks for timestamps
        are decoded under the timestamp grammar (:class:`.timestamp_rules.TimestampRules`).
        """
        if "labels" in batch:
            raise ValueError("generate takes a batch prepared without targets (left padded), but this one has labels")
        device = self.device
        batch = {k: v.to(device) for k, v in batch.items()}
        attention_mask = batch["attention_mask"]
        if bool((attention_mask[:, -1] == 0).any()):
            raise ValueError(
                "generate needs left padding; AudioProcessor.prepare(audios, prompts) without targets gives it"
            )
        states, lengths = self._audio_states(
            batch.get("input_features"),
            batch.get("feature_lengths"),
            batch.get("encoder_states"),
            batch.get("encoder_lengths"),
            {k: batch[k] for k in tower_keys(len(self.towers)) if k in batch},
        )
        embeds = self._inputs_embeds(batch["input_ids"], self._project(states, lengths))  # (B, L, H)
        rules = self._timestamp_rules(batch["input_ids"])
        if rules is not None:
            kwargs["logits_processor"] = LogitsProcessorList([*kwargs.get("logits_processor", []), rules])
        was_training = self.training
        self.eval()
        try:
            new_tokens = unwrap(self.language_model).generate(
                inputs_embeds=embeds,
                attention_mask=attention_mask,
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                do_sample=do_sample,
                pad_token_id=self.token_ids.pad,
                eos_token_id=self.token_ids.eos,
                **kwargs,
            )  # (B * n, new): transformers 5 gives new tokens only
        finally:
            self.train(was_training)
        return new_tokens


def load_model_and_processor(
    path_or_hub_id: str | Path, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
) -> tuple[AudioLM, AudioProcessor]:
    """The model and its processor from one saved directory or hub id (see :meth:`AudioLM.from_pretrained`)."""
    model = AudioLM.from_pretrained(path_or_hub_id, device=device, dtype=dtype)
    return model, model.processor
