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

import torch

from ..dtypes import torch_dtype

FORMAT_VERSION = 1  # bump when what is stored changes meaning
DTYPES = {name: torch_dtype(name) for name in ("fp16", "bf16", "fp32")}  # the storage dtypes offered
SHARD_ENTRIES = 512  # clips per shard file


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


def encode_clips(
    processor: AudioProcessor,
    model: AudioLM,
    clips: list,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> list[torch.Tensor]:
    """Encoder states of each clip, (T'_i, D_enc) float32, as training computes them: the
    processor's float32 log-mels, the encoder on real lengths (:meth:`AudioLM.encode`) under
    ``autocast()`` (the training precision)."""
    from ..model.processor import audio_inputs

    inputs = processor.prepare(clips, [""] * len(clips))  # the log-mels, as training computes them
    with torch.no_grad(), autocast():
        states, lengths = model.encode(**audio_inputs(inputs))  # (B, T', D), (B,); D fused with towers
    return [states[i, : int(lengths[i])].float() for i in range(len(clips))]  # (T'_i, D_enc) each


def fill_cache(
    cache: FeatureCache,
    processor: AudioProcessor,
    model: AudioLM,
    todo: dict,
    batch_size: int,
    tag: str,
    progress: bool = False,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    load: Callable[[Any], Any] | None = None,
) -> list:
    """Encode the clips of ``todo`` (key -> item with a ``duration``) and store them in shards.

    Clips are encoded in duration-sorted batches by :func:`encode_clips`. ``load(item)`` gives
    an item's samples (default: a training item's audio, :func:`~.batching.load_clip`) and may
    raise :class:`~qaudio.audio.AudioError`. Returns the :class:`BadItem` of every clip whose
    audio could not be used; those keys stay missing.
    """
    from ..audio import AudioError
    from .bad_data import BadItem
    from .batching import bad_audio, load_clip

    load = load or (lambda item: load_clip(item, processor.max_audio_seconds))
    order = sorted(todo, key=lambda k: todo[k].duration)
    bad: list[BadItem] = []
    pending: dict[str, torch.Tensor] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc="encoder cache", unit="clip", dynamic_ncols=True)
    for start in range(0, len(order), batch_size):
        keys, clips = [], []
        for key in order[start : start + batch_size]:
            item = todo[key]
            try:
                clips.append(load(item))
                keys.append(key)
            except AudioError as e:
                bad.append(bad_audio(item, e))
        if clips:
            pending.update(zip(keys, encode_clips(processor, model, clips, autocast), strict=True))
        if len(pending) >= SHARD_ENTRIES:
            cache.write_shard(pending, tag)
            pending = {}
        if bar is not None:
            bar.update(len(order[start : start + batch_size]))
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
            batch_size=cfg.batch_size or 32,
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
