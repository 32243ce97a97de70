"""AudioProcessor: audio and text -> model tensors, and generated token ids -> text.

Everything that turns a clip and its texts into what :class:`qaudio.model.AudioLM` reads, and
its output back into text, lives here, apart from the model's modules (as a Hugging Face
processor sits beside its model): the training collator, the feature cache, the inference
pipeline and the benchmarks hold a processor, not the model. One LLM input is

    [bos] <|audio_bos|> <|AUDIO|> x N <|audio_eos|> prompt target <eos>

where N = :func:`qaudio.model.lengths.audio_token_count` of the clip. Labels mark the target
and ``<eos>`` only; every other position is :data:`IGNORE_INDEX` (:func:`target_labels`).

Saved beside the weights: :meth:`AudioProcessor.save_pretrained` writes the tokenizer files and
``preprocessor_config.json`` (the ``WhisperFeatureExtractor``) into the model directory, the
files every qaudio model directory already holds, so directories saved before the processor
existed load unchanged; :meth:`AudioProcessor.from_pretrained` reads them and the directory's
``config.json`` from a path or a hub id, through the model's own loader.

A model with second audio towers (``ModelConfig.towers``, e.g. AST) gets each tower's inputs too,
made by that tower's own transformers feature extractor on the windows the tower reads
(:func:`qaudio.model.towers.window_features`); the extractors are saved under ``towers/<i>/``.

Reference: transformers ``ProcessorMixin`` (``Qwen2AudioProcessor``: a tokenizer and a
``WhisperFeatureExtractor`` saved in the model directory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase, WhisperFeatureExtractor

from ..audio import SAMPLE_RATE
from ..config import ModelConfig
from ..tags import AUDIO_BOS, AUDIO_EOS, AUDIO_PLACEHOLDER, AUDIO_SLOT, TIMESTAMPS
from .lengths import HOP_LENGTH, N_FFT, WHISPER_POSITIONS, audio_token_count, max_samples, max_seconds, mel_frame_count

TOWERS_DIR = "towers"  # the second towers' feature extractors: towers/<i>/preprocessor_config.json
IGNORE_INDEX = -100  # label of positions outside the loss (PyTorch's cross_entropy default)


@dataclass(frozen=True)
class TokenIds:
    """The token ids the model itself needs: its audio slots, padding and the end token."""

    audio_bos: int
    audio: int  # the <|AUDIO|> placeholder the projector's outputs are written into
    audio_eos: int
    pad: int
    eos: int
    timestamps: int | None  # <|timestamps|>: a prompt holding it asks for a timestamped answer (None: no such tag)


def known_token_ids(tokenizer: PreTrainedTokenizerBase, tokens: Sequence[str]) -> list[int] | None:
    """The ids of ``tokens``, or None when the tokenizer lacks one of them (a released model's own
    tokenizer, e.g. Qwen2-Audio's, may hold the audio tokens but not every qaudio tag)."""
    ids = cast("list[int | None]", tokenizer.convert_tokens_to_ids(list(tokens)))
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        return None
    return cast("list[int]", ids)


def target_labels(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, tokens: TokenIds
) -> torch.Tensor:
    """``labels`` (B, L) with audio slots and padding set to :data:`IGNORE_INDEX`, whatever they held.

    The one place that decides which positions are targets: the model's loss uses it, and so
    does anything that builds labels another way (the benchmarks' peer inputs).
    """
    audio = (input_ids == tokens.audio) | (input_ids == tokens.audio_bos) | (input_ids == tokens.audio_eos)  # (B, L)
    return labels.masked_fill(audio | (attention_mask == 0), IGNORE_INDEX)


def sequence_batch(
    heads: Sequence[Sequence[int]], tails: Sequence[Sequence[int]] | None, pad_id: int
) -> dict[str, torch.Tensor]:
    """Token rows -> ``input_ids``, ``attention_mask`` (B, L) and, with ``tails``, ``labels``.

    Each row is a head (audio slots and prompt: never a target) and, for training, a tail (the
    target and the end token: the labels). With tails the rows are right padded and labelled
    (:data:`IGNORE_INDEX` on heads and padding); without, left padded for generation. The one
    place a target's labels are laid out: qaudio's processor and the benchmarks' peer use it.
    """
    rows = [[*h, *(tails[i] if tails is not None else ())] for i, h in enumerate(heads)]
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)  # (B, L)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)  # (B, L)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)  # (B, L)
    for i, row in enumerate(rows):
        span = slice(0, len(row)) if tails is not None else slice(length - len(row), length)
        input_ids[i, span] = torch.tensor(row)
        attention_mask[i, span] = 1
        if tails is not None:
            labels[i, len(heads[i]) : len(row)] = torch.tensor(list(tails[i]), dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if tails is not None:
        batch["labels"] = labels
    return batch


def audio_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of a :meth:`AudioProcessor.prepare` batch that ``AudioLM.encode`` reads: the
    log-mels, their lengths and, when the batch has them, every second tower's inputs."""
    from .towers import tower_keys

    towers = 0
    while tower_keys(towers + 1)[-2] in batch:
        towers += 1
    return {k: batch[k] for k in ("input_features", "feature_lengths", *tower_keys(towers))}


class AudioProcessor:
    """Tokenizer + Whisper feature extractor + the model config that fixes slot counts and limits."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        feature_extractor: WhisperFeatureExtractor,
        config: ModelConfig,
        tower_extractors: Sequence[Any] = (),
    ):
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.config = config
        if len(tower_extractors) != len(config.towers):
            raise ValueError(
                f"the config has {len(config.towers)} second audio tower(s) but {len(tower_extractors)} feature "
                "extractor(s) were given; give one per tower (qaudio.model.towers.load_towers makes them)"
            )
        self.tower_extractors = list(tower_extractors)  # one transformers feature extractor per config.towers entry
        ids = cast("list[int | None]", tokenizer.convert_tokens_to_ids([AUDIO_BOS, AUDIO_PLACEHOLDER, AUDIO_EOS]))
        audio_bos, audio, audio_eos = ids
        if (
            audio_bos is None
            or audio is None
            or audio_eos is None
            or (tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids)
        ):
            raise ValueError("the tokenizer lacks the audio tokens; build it with qaudio.tags.add_tag_tokens")
        timestamps = known_token_ids(tokenizer, [TIMESTAMPS])
        self.token_ids = TokenIds(
            audio_bos,
            audio,
            audio_eos,
            pad=tokenizer.pad_token_id,
            eos=tokenizer.eos_token_id,
            timestamps=timestamps[0] if timestamps else None,
        )

    # ---- Saving and loading ------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the tokenizer files and ``preprocessor_config.json`` into ``directory`` (the model's)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))
        self.feature_extractor.save_pretrained(str(directory))
        for i, extractor in enumerate(self.tower_extractors):
            extractor.save_pretrained(str(directory / TOWERS_DIR / str(i)))
        return directory

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path) -> AudioProcessor:
        """The processor of a saved qaudio model directory (or hub id), as the model loader finds it."""
        from .checkpoint import _read_meta, local_directory

        directory = local_directory(path_or_hub_id)
        return cls.from_directory(directory, ModelConfig.from_dict(_read_meta(directory)["model"]))

    @classmethod
    def from_directory(cls, directory: Path, config: ModelConfig) -> AudioProcessor:
        """The tokenizer and feature extractor saved in ``directory``, with the model's ``config``."""
        missing = [
            name for name in ("tokenizer_config.json", "preprocessor_config.json") if not (directory / name).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"{directory} lacks {', '.join(missing)}: the processor is saved beside the weights "
                "(AudioProcessor.save_pretrained on the same directory)"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        feature_extractor = WhisperFeatureExtractor.from_pretrained(str(directory))
        from .towers import TOWERS

        towers = []
        for i, tower in enumerate(config.towers):
            where = directory / TOWERS_DIR / str(i)
            if not (where / "preprocessor_config.json").is_file():
                raise FileNotFoundError(
                    f"{where} lacks preprocessor_config.json: tower {i} ({tower.kind})'s feature extractor is saved "
                    "there by AudioProcessor.save_pretrained"
                )
            towers.append(TOWERS[tower.kind].extractor_class.from_pretrained(str(where)))
        return cls(tokenizer, feature_extractor, config, towers)

    # ---- Facts -------------------------------------------------------------------------------

    @property
    def max_audio_seconds(self) -> float:
        """The longest clip the encoder takes (30.0 for Whisper); longer audio must be split first."""
        return max_seconds()

    # ---- Audio and text -> tensors -----------------------------------------------------------

    def prepare(
        self, audios: Sequence[np.ndarray], prompts: Sequence[str], targets: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Audio (16 kHz mono float arrays) and texts -> model inputs (CPU tensors).

        Keys: ``input_features`` (B, n_mels, T_max) log-mels, ``feature_lengths`` (B,) real mel
        frames, ``input_ids`` and ``attention_mask`` (B, L), and with targets ``labels`` (B, L).
        With targets the batch is right padded (training); without, left padded (generation).
        With second towers, also ``tower_features_<i>`` and ``tower_windows_<i>`` per tower
        (:func:`qaudio.model.towers.window_features`).
        """
        clips = [self._check_clip(i, audio) for i, audio in enumerate(audios)]
        self._check_texts(len(clips), prompts, targets)
        features, mel_lengths = self.log_mel(clips)
        counts = [int(audio_token_count(None, self.config, mel_frames=m)) for m in mel_lengths]
        text = self._text_batch(counts, prompts, targets)
        return {
            "input_features": features,
            "feature_lengths": torch.tensor(mel_lengths),
            **self.tower_inputs(clips),
            **text,
        }

    def tower_inputs(self, clips: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """The second towers' batch entries for checked clips (empty without towers)."""
        from .towers import window_features

        out: dict[str, torch.Tensor] = {}
        for i, extractor in enumerate(self.tower_extractors):
            out.update(window_features(extractor, clips, self.config, i))
        return out

    def prepare_from_features(
        self, encoder_states: Sequence[torch.Tensor], prompts: Sequence[str], targets: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Like :meth:`prepare`, from cached encoder outputs: one (T', D_enc) tensor per clip.

        Keys: ``encoder_states`` (B, T'_max, D_enc), zero padded, on the states' device;
        ``encoder_lengths`` (B,); ``input_ids``, ``attention_mask`` and ``labels`` as in prepare.
        With second towers D_enc is the fused width (``ModelConfig.audio_width``): what
        ``AudioLM.encode`` returns.
        """
        width = self.config.audio_width
        limit = WHISPER_POSITIONS  # encoder frames in one 30 s window
        for i, s in enumerate(encoder_states):
            if s.dim() != 2 or s.shape[1] != width or not 1 <= s.shape[0] <= limit:
                raise ValueError(
                    f"encoder state {i} has shape {tuple(s.shape)}; expected (frames in 1..{limit}, {width})"
                )
        self._check_texts(len(encoder_states), prompts, targets)
        lengths = [s.shape[0] for s in encoder_states]
        counts = [int(audio_token_count(None, self.config, encoder_frames=n)) for n in lengths]
        states = nn.utils.rnn.pad_sequence(list(encoder_states), batch_first=True)  # (B, T'_max, D)
        text = self._text_batch(counts, prompts, targets)
        return {"encoder_states": states, "encoder_lengths": torch.tensor(lengths), **text}

    def _check_clip(self, index: int, audio: np.ndarray | torch.Tensor | Sequence[float]) -> np.ndarray:
        clip = np.asarray(audio, dtype=np.float32)
        if clip.ndim != 1:
            raise ValueError(f"audio {index} has shape {clip.shape}; expected 1-D mono samples at {SAMPLE_RATE} Hz")
        longest = max_samples()
        if len(clip) > longest:
            raise ValueError(
                f"audio {index} is {len(clip) / SAMPLE_RATE:.2f} s long, longer than the encoder window "
                f"of {self.max_audio_seconds:.0f} s ({len(clip)} > {longest} samples); split long "
                "audio into windows first (qaudio.chunking does)"
            )
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
            raise ValueError(
                f"{batch} clips but {len(prompts)} prompts"
                + ("" if targets is None else f" and {len(targets)} targets")
            )
        for kind, texts in (("prompt", prompts), ("target", targets or [])):
            for i, text in enumerate(texts):
                if not isinstance(text, str):
                    raise ValueError(f"{kind} {i} must be a string, got {type(text).__name__}")
                # A prompt may say where the audio goes, once, as AUDIO_SLOT (the chat style does).
                rest = text.replace(AUDIO_SLOT, "", 1) if kind == "prompt" else text
                for token in (AUDIO_BOS, AUDIO_PLACEHOLDER, AUDIO_EOS):
                    if token in rest:
                        raise ValueError(
                            f"{kind} {i} contains {token}; the audio slots are added by prepare() "
                            f"(a prompt may hold {AUDIO_SLOT} once, where the audio goes)"
                        )

    def log_mel(self, clips: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
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
        out = extractor(
            padded,
            sampling_rate=SAMPLE_RATE,
            padding="longest",
            max_length=width,
            truncation=False,
            return_tensors="pt",
        )
        features = out["input_features"][..., : max(mel_lengths)]  # (B, n_mels, T_max)
        valid = torch.arange(features.shape[-1]) < torch.tensor(mel_lengths)[:, None]  # (B, T_max)
        return features * valid[:, None, :], mel_lengths

    def _text_batch(self, counts: list[int], prompts: Sequence[str], targets: Sequence[str] | None) -> dict:
        """input_ids, attention_mask (and labels): audio slots + prompt (+ target + eos), padded."""
        tok, ids = self.tokenizer, self.token_ids
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []  # Llama-style LLMs expect it first
        # Text before the audio (a chat prompt's turns up to AUDIO_SLOT) and after it, tokenized apart.
        before, after = zip(*(p.split(AUDIO_SLOT, 1) if AUDIO_SLOT in p else ("", p) for p in prompts), strict=True)
        before_ids = tok(list(before), add_special_tokens=False)["input_ids"]
        prompt_ids = tok(list(after), add_special_tokens=False)["input_ids"]
        target_ids = tok(list(targets), add_special_tokens=False)["input_ids"] if targets is not None else None
        heads = [
            [*bos, *before_ids[i], ids.audio_bos, *[ids.audio] * n, ids.audio_eos, *prompt]
            for i, (n, prompt) in enumerate(zip(counts, prompt_ids, strict=True))
        ]
        tails = [[*t, ids.eos] for t in target_ids] if target_ids is not None else None
        length = max(len(h) + (len(tails[i]) if tails else 0) for i, h in enumerate(heads))
        if length > self.config.llm.max_positions:
            raise ValueError(
                f"a sequence of {length} tokens exceeds the LLM's {self.config.llm.max_positions} positions"
            )
        return sequence_batch(heads, tails, ids.pad)

    # ---- Token ids -> text -------------------------------------------------------------------

    def decode(self, ids: Sequence[int]) -> str:
        """One generated row as text: cut at the end token, padding removed, tag and time tokens kept."""
        ids = list(ids)
        if self.token_ids.eos in ids:
            ids = ids[: ids.index(self.token_ids.eos)]
        ids = [i for i in ids if i != self.token_ids.pad]
        return cast(str, self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))

    def batch_decode(self, rows: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        """:meth:`decode` per row of generated ids ((B, new) tensor or lists)."""
        rows = rows.tolist() if isinstance(rows, torch.Tensor) else rows
        return [self.decode(row) for row in rows]
