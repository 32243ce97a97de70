"""The frozen-encoder feature cache: encoder outputs computed once, stored in shards, reused.

When the audio encoder does not train, its output for a clip never changes, and on a CPU it
is most of a training step's cost. ``--cache-encoder DIR`` computes each clip's encoder
states once (on the clip's real length, as :meth:`AudioLM.encode` does in training) and
training reads them back through :meth:`AudioProcessor.prepare_from_features`.

A cache entry must never be used for other audio or another encoder, so:

- a clip's key is the SHA-256 of its file's bytes (plus the segment, for a chunk): a file
  edited in place gets a new key, a copy under another path reuses the entry;
- the cache directory is ``DIR/<encoder id>/``, where the encoder id hashes the encoder's
  config, every weight and buffer of the audio tower, the feature extractor's settings, the
  compute precision and this module's format version. Another encoder (or the same one after
  fine-tuning) gets another directory.

A model with second audio towers (``ModelConfig.towers``) caches the fused states, (T', D_whisper
+ sum D_tower) per clip, exactly what :meth:`AudioLM.encode` gives; the id then also hashes each
tower's config, weights and feature extractor. A tower trained with LoRA refuses the cache, as
a trained Whisper encoder does: its outputs change at every step.

A clip's entry does not depend on which clips it was encoded with. Encoder outputs move by
about 1e-5 with the shape of the batch (the matmul and attention kernels block their sums by the
padded length and the row count), and training amplifies that: the demo trained on a cache filled
in two goes scored up to 1.7 WER points off the same run on a cache filled at once
(benchmarks/RESULTS.md, "More distinct examples"). So every clip is encoded in a batch of one
shape that follows from its length alone: :data:`CANONICAL_ROWS` rows, padded to its mel frames
rounded up to a multiple of :data:`CANONICAL_FRAMES`, with silent filler clips of exactly that
length in the rows left over. Measured on Whisper tiny.en: clips so encoded are bitwise equal
whatever their batch-mates, position or order.

Files: ``encoder.json`` (what the id was computed from), ``shard-r<R>-<N>.safetensors``
(one tensor (T', D_enc) per key, written to a temporary name and renamed, so a killed run
leaves no half shard). The index is the union of the shards' tensor names, read from their
headers at open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..model.audio_lm import AudioLM
    from ..model.processor import AudioProcessor
    from .bad_data import BadDataLog
    from .config import TrainConfig

import numpy as np
import torch

from ..dtypes import torch_dtype
from ..model.lengths import CONV_STRIDE, HOP_LENGTH, WHISPER_POSITIONS, mel_frame_count

FORMAT_VERSION = 1  # bump when what is stored changes meaning
DTYPES = {name: torch_dtype(name) for name in ("fp16", "bf16", "fp32")}  # the storage dtypes offered
SHARD_ENTRIES = 512  # clips per shard file
# The one batch shape each clip is encoded in (see the module's docstring): 16 rows, at least one a
# filler; padded lengths in steps of half a second. Measured on 2 cores: 1.2x the old fill's time
# on 600 clips of 1-10 s, the same clips per second on the demo's 11,008 (benchmarks/RESULTS.md).
CANONICAL_ROWS = 16
CANONICAL_FRAMES = 50


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def audio_key(path: str | os.PathLike, segment: tuple[float, float] | None = None) -> str:
    """The cache key of a clip: its file's content hash, plus the segment for a chunk."""
    digest = file_digest(path)
    return digest if segment is None else f"{digest}@{segment[0]:.3f}-{segment[1]:.3f}"


def weights_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes) of ``module``."""
    h = hashlib.sha256()
    tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def encoder_identity(model: AudioLM, processor: AudioProcessor, precision: str) -> dict:
    """What the encoder id hashes: everything that changes the encoder's outputs (the model's
    encoder config and audio tower, the processor's feature extractor, the precision)."""
    identity = {
        "format": FORMAT_VERSION,
        "encoder_config": dataclasses.asdict(model.config.encoder),
        "feature_extractor": processor.feature_extractor.to_dict(),
        "weights_sha256": weights_fingerprint(model.audio_tower),
        "precision": precision,
        "batch_shape": {"rows": CANONICAL_ROWS, "frames_multiple": CANONICAL_FRAMES},
    }
    if model.config.towers:  # only then, so a Whisper-only model keeps its cache directory
        identity["towers"] = [
            {
                "config": dataclasses.asdict(config),
                "feature_extractor": extractor.to_dict(),
                "weights_sha256": weights_fingerprint(tower),
            }
            for config, extractor, tower in zip(
                model.config.towers, processor.tower_extractors, model.towers, strict=True
            )
        ]
    return identity


def identity_hash(identity: dict) -> str:
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class FeatureCache:
    """Encoder states by audio key, in safetensors shards under ``root/<encoder id>/``."""

    def __init__(self, root: str | os.PathLike, identity: dict, dtype: str = "fp16"):
        if dtype not in DTYPES:
            raise ValueError(f"cache dtype {dtype!r}; valid choices: {', '.join(DTYPES)}")
        self.identity = {**identity, "storage_dtype": dtype}
        self.dtype = DTYPES[dtype]
        self.dir = Path(root) / identity_hash(self.identity)
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "encoder.json"
        if not meta.exists():
            tmp = meta.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(self.identity, indent=1, sort_keys=True, default=str), encoding="utf-8")
            os.replace(tmp, meta)
        self._handles: dict[str, Any] = {}  # shard name -> safetensors' open file (safe_open)
        self.index: dict[str, str] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-read the shard headers (after other processes wrote shards)."""
        from safetensors import safe_open

        for shard in sorted(self.dir.glob("shard-*.safetensors")):
            if shard.name in self._handles:
                continue
            handle = safe_open(str(shard), framework="pt")
            self._handles[shard.name] = handle
            for key in handle.keys():
                self.index[key] = shard.name

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def __len__(self) -> int:
        return len(self.index)

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k not in self.index]

    def get(self, key: str) -> torch.Tensor:
        """The stored states of one clip, (T', D_enc), in the storage dtype."""
        if key not in self.index:
            raise KeyError(f"clip {key[:16]}... is not in the feature cache {self.dir}")
        return self._handles[self.index[key]].get_tensor(key)

    def write_shard(self, entries: dict[str, torch.Tensor], tag: str) -> Path:
        """Store ``entries`` (key -> (T', D_enc)) as one new shard; atomic by rename."""
        from safetensors.torch import save_file

        n = len(list(self.dir.glob(f"shard-{tag}-*.safetensors")))
        final = self.dir / f"shard-{tag}-{n:05d}.safetensors"
        tmp = self.dir / f".tmp-{final.name}"
        save_file({k: v.detach().to("cpu", self.dtype).contiguous() for k, v in entries.items()}, str(tmp))
        os.replace(tmp, final)
        self.refresh()
        return final


def canonical_frames(mel_frames: int) -> int:
    """The padded length, in mel frames, a clip of ``mel_frames`` is encoded at: the next multiple
    of :data:`CANONICAL_FRAMES`, at most the encoder's 30 s window."""
    return min(-(-mel_frames // CANONICAL_FRAMES) * CANONICAL_FRAMES, WHISPER_POSITIONS * CONV_STRIDE)


def encode_clips(
    processor: AudioProcessor,
    model: AudioLM,
    clips: list[np.ndarray],
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    shape: tuple[int, int] | None = None,
) -> list[torch.Tensor]:
    """Encoder states of each clip, (T'_i, D_enc) float32, as training computes them: the
    processor's float32 log-mels, the encoder on real lengths (:meth:`AudioLM.encode`) under
    ``autocast()`` (the training precision).

    ``shape`` = (rows, mel frames): silent filler clips of exactly that many frames fill the batch
    to that many rows, so the encoder always runs on that shape (fewer clips than rows, none longer)."""
    from ..model.processor import audio_inputs

    batch = list(clips)
    if shape is not None:
        rows, frames = shape
        longest = max(int(mel_frame_count(len(c))) for c in clips)
        if len(clips) >= rows or longest > frames:
            raise ValueError(
                f"{len(clips)} clip(s) of up to {longest} mel frames do not fit a batch of {rows} rows "
                f"x {frames} frames with a filler row"
            )
        batch += [np.zeros(frames * HOP_LENGTH, dtype=np.float32)] * (rows - len(clips))
    inputs = processor.prepare(batch, [""] * len(batch))  # the log-mels, as training computes them
    with torch.no_grad(), autocast():
        states, lengths = model.encode(**audio_inputs(inputs))  # (B, T', D), (B,); D fused with towers
    return [states[i, : int(lengths[i])].float() for i in range(len(clips))]  # (T'_i, D_enc) each


def fill_cache(
    cache: FeatureCache,
    processor: AudioProcessor,
    model: AudioLM,
    todo: dict,
    tag: str,
    progress: bool = False,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    load: Callable[[Any], Any] | None = None,
) -> list:
    """Encode the clips of ``todo`` (key -> item with a ``duration``) and store them in shards.

    Clips are read in duration order and encoded by :func:`encode_clips` in the canonical batch
    shape of their length (:func:`canonical_frames`), ``CANONICAL_ROWS - 1`` of them at a time.
    ``load(item)`` gives an item's samples (default: a training item's audio,
    :func:`~.batching.load_clip`) and may raise :class:`~qaudio.audio.AudioError`. Returns the
    :class:`BadItem` of every clip whose audio could not be used; those keys stay missing.
    """
    from ..audio import AudioError
    from .bad_data import BadItem
    from .batching import bad_audio, load_clip

    load = load or (lambda item: load_clip(item, processor.max_audio_seconds))
    order = sorted(todo, key=lambda k: todo[k].duration)
    bad: list[BadItem] = []
    pending: dict[str, torch.Tensor] = {}
    waiting: dict[int, dict[str, np.ndarray]] = {}  # padded length -> clips waiting for a batch of it

    def encode_waiting(frames: int) -> None:
        clips = waiting.pop(frames)
        states = encode_clips(processor, model, list(clips.values()), autocast, (CANONICAL_ROWS, frames))
        pending.update(zip(clips, states, strict=True))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc="encoder cache", unit="clip", dynamic_ncols=True)
    for key in order:
        item = todo[key]
        try:
            samples = load(item)
        except AudioError as e:
            bad.append(bad_audio(item, e))
        else:
            frames = canonical_frames(int(mel_frame_count(len(samples))))
            waiting.setdefault(frames, {})[key] = samples
            if len(waiting[frames]) == CANONICAL_ROWS - 1:
                encode_waiting(frames)
            if len(pending) >= SHARD_ENTRIES:
                cache.write_shard(pending, tag)
                pending.clear()
        if bar is not None:
            bar.update(1)
    for frames in sorted(waiting):
        encode_waiting(frames)
    if pending:
        cache.write_shard(pending, tag)
    if bar is not None:
        bar.close()
    return bad


def cache_for_training(
    cfg: TrainConfig,
    model: AudioLM,
    processor: AudioProcessor,
    accelerator: Accelerator,
    items_by_split: dict[str, list],
    bad: BadDataLog,
    precision: str,
) -> tuple[FeatureCache, dict[str, list[str]], dict[str, list]]:
    """Open ``--cache-encoder DIR``, compute what is missing (split over processes), key every item.

    Returns (cache, {split: keys}, {split: items}) with items whose audio failed removed.
    """
    from accelerate.utils import gather_object

    from .bad_data import BadItem

    if cfg.cache_encoder is None:
        raise ValueError("no --cache-encoder directory was given")
    if model.config.trainable.encoder != "frozen":
        raise ValueError(
            f"--cache-encoder needs a frozen encoder; this model trains it "
            f"({model.config.trainable.encoder}): drop --cache-encoder or freeze the encoder"
        )
    trained_towers = [f"{i} ({t.kind})" for i, t in enumerate(model.config.towers) if t.train != "frozen"]
    if trained_towers:
        raise ValueError(
            f"--cache-encoder needs frozen audio towers; this model trains tower(s) {', '.join(trained_towers)} "
            "with LoRA, so their outputs change every step: drop --cache-encoder or set the towers' train to frozen"
        )
    cache = FeatureCache(cfg.cache_encoder, encoder_identity(model, processor, precision), cfg.cache_dtype)
    keys = {s: [audio_key(it.example.audio, it.segment) for it in its] for s, its in items_by_split.items()}
    todo = {}
    for s, its in items_by_split.items():
        for it, k in zip(its, keys[s], strict=True):
            if k not in cache and k not in todo:
                todo[k] = it
    # Every process lists what is missing before any starts writing, so the lists agree and
    # dealing them out (every N-th clip to each process) covers each clip once.
    accelerator.wait_for_everyone()
    if todo:
        if accelerator.is_main_process:
            print(f"qaudio train: caching encoder outputs of {len(todo)} clip(s) in {cache.dir}", flush=True)
        mine = dict(list(todo.items())[accelerator.process_index :: accelerator.num_processes])
        found_bad = fill_cache(
            cache,
            processor,
            model,
            mine,
            tag=f"r{accelerator.process_index}",
            progress=cfg.progress and accelerator.is_main_process,
            autocast=accelerator.autocast,
        )
        accelerator.wait_for_everyone()
        all_bad = gather_object(found_bad) if accelerator.num_processes > 1 else found_bad
        for item in all_bad:
            bad.record(item)
        cache.refresh()
    kept_items, kept_keys = {}, {}
    for s, its in items_by_split.items():
        for it, k in zip(its, keys[s], strict=True):
            if k not in cache:  # its audio failed (recorded above, once per id)
                bad.record(
                    BadItem("unusable audio", it.example.id, it.example.audio, "not in the feature cache", it.source)
                )
        pairs = [(it, k) for it, k in zip(its, keys[s], strict=True) if k in cache]
        kept_items[s] = [p[0] for p in pairs]
        kept_keys[s] = [p[1] for p in pairs]
    return cache, kept_keys, kept_items
