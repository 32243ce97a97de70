"""Items -> model inputs: the prompt, one target, the audio (or cached encoder outputs).

The :class:`Collator` runs in the training process or in data-loader workers. Audio that
cannot be used (corrupt, silent, longer than the encoder window once decoded) is left out
of the batch and reported in :attr:`Batch.bad`, for the main process to count; a batch
whose every example was bad comes back with ``inputs`` None.

Caption corpora give several references per clip; one is picked per draw, from a hash of
(seed, stream position, example id), so the choice is the same in every process, in
workers, and after a resume (no random state to carry).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model.processor import AudioProcessor
    from .augmentation import Augmenter
    from .feature_cache import FeatureCache
    from .mixing import MixtureSampler


import hashlib
import os
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import torch

from ..audio import SAMPLE_RATE, AudioError, load_audio
from .bad_data import BadDataLog, BadItem, TrainingAborted
from .corpus import Item


def choose_target(targets: list[str], seed: int, position: int, example_id: str) -> str:
    """One of ``targets``, fixed by (seed, position, id); position < 0 (dev) takes the first."""
    if len(targets) == 1 or position < 0:
        return targets[0]
    digest = hashlib.blake2b(f"{seed}:{position}:{example_id}".encode(), digest_size=8).digest()
    return targets[int.from_bytes(digest, "little") % len(targets)]


def load_clip(item: Item, max_seconds: float, source: Any = None) -> np.ndarray:
    """The item's samples (its segment when chunked); AudioError when unusable.

    ``source``: the encoded audio when it is not the file ``item.example.audio`` (streamed shards
    hold the bytes)."""
    samples = load_audio(item.example.audio if source is None else source).samples  # (T,) float32, 16 kHz
    if item.segment is not None:
        a, b = item.segment
        samples = samples[round(a * SAMPLE_RATE) : round(b * SAMPLE_RATE)]
    seconds = len(samples) / SAMPLE_RATE
    if seconds > max_seconds + 1e-3:
        raise AudioError(
            f"{item.example.audio}: decoded audio is {seconds:.2f} s, longer than the encoder window "
            f"of {max_seconds:g} s (the manifest says {item.duration:.2f} s)"
        )
    if len(samples) == 0:
        raise AudioError(f"{item.example.audio}: segment {item.segment} is empty")
    return samples


def bad_audio(item: Item, error: Exception) -> BadItem:
    reason = "missing file" if not os.path.isfile(item.example.audio) else "unusable audio"
    return BadItem(reason, item.example.id, item.example.audio, str(error), item.source)


@dataclass
class Batch:
    """One micro-batch: model inputs plus what the loop logs about it."""

    inputs: dict[str, torch.Tensor] | None  # AudioProcessor.prepare(...) output; None if every item was bad
    tasks: list[str] = field(default_factory=list)  # task name per row
    ids: list[str] = field(default_factory=list)  # example id per row
    audio_seconds: float = 0.0  # real (unpadded) audio in the batch
    bad: list[BadItem] = field(default_factory=list)  # items left out, for the main process to count
    position: int = -1  # global stream position (-1 for dev batches)
    stream: dict | None = None  # streamed shards: the reader's state after this batch (.streaming)


class Collator:
    """Builds :class:`Batch` objects from item indices; a ``torch.utils.data`` collate_fn.

    ``processor``: the model's :class:`~qaudio.model.AudioProcessor` (the collator holds no
    model, so data-loader workers get the tokenizer and feature extractor only); ``cache``: a :class:`~.feature_cache.FeatureCache` to read encoder outputs from instead
    of decoding audio; ``keys``: the cache key per item index; ``augment``: the training
    examples' :class:`~.augmentation.Augmenter` (dev batches, at position -1, are never augmented);
    ``ctc``: add each clip's transcript tokens for the auxiliary CTC loss (:func:`ctc_targets`).
    """

    def __init__(
        self,
        processor: AudioProcessor,
        items: list[Item],
        style: str,
        seed: int,
        max_seconds: float,
        cache: FeatureCache | None = None,
        keys: list[str] | None = None,
        known_bad: Collection[str] | None = None,
        augment: Augmenter | None = None,
        ctc: bool = False,
    ):
        self.processor = processor
        self.items = items
        self.style = style
        self.seed = seed
        self.max_seconds = max_seconds
        self.cache = cache
        self.keys = keys
        self.known_bad = known_bad if known_bad is not None else set()
        self.augment = augment
        self.ctc = ctc

    def __call__(self, request: list[tuple[int, int]]) -> Batch:
        """``request``: (stream position, item index) pairs of one micro-batch."""
        position = request[0][0] if request else -1
        rows: list[tuple[Item, int, Any]] = []  # (item, position, samples (T,) or cached states (T', D_enc))
        bad = []
        for pos, index in request:
            item = self.items[index]
            if item.example.id in self.known_bad:
                continue
            if self.cache is not None:
                assert self.keys is not None, "a feature cache comes with the items' keys"
                rows.append((item, pos, self.cache.get(self.keys[index])))  # (T', D_enc)
                continue
            try:
                rows.append((item, pos, load_clip(item, self.max_seconds)))  # (T,)
            except AudioError as e:
                bad.append(bad_audio(item, e))
        return self.collate(rows, bad, position)

    def collate(self, rows: list[tuple[Item, int, Any]], bad: list[BadItem], position: int) -> Batch:
        """(item, stream position, samples (T,) or cached states (T', D_enc)) rows -> a Batch; the
        streamed path (:mod:`.streaming`) loads its rows itself and calls this."""
        if not rows:
            return Batch(None, bad=bad, position=position)
        prompts = [it.task.prompt(it.example.request(it.task), self.style) for it, _, _ in rows]
        targets = [choose_target(it.task.targets(it.example), self.seed, pos, it.example.id) for it, pos, _ in rows]
        signals = [signal for _, _, signal in rows]
        rngs = [self.augment.rng_for(it, pos) for it, pos, _ in rows] if self.augment else []
        if self.augment is not None:  # waveforms (or cached encoder outputs), before they become inputs
            n_mels = self.processor.config.encoder.n_mels
            signals, targets = self.augment.before_encoder(signals, targets, rngs, n_mels)
        if self.cache is not None:
            inputs = self.processor.prepare_from_features(signals, prompts, targets)
        else:
            inputs = self.processor.prepare(signals, prompts, targets)
            if self.augment is not None:  # SpecAugment on the log-mels
                self.augment.after_log_mel(inputs["input_features"], inputs["feature_lengths"], rngs)
        if self.ctc:
            inputs.update(ctc_targets(self.processor, [it for it, _, _ in rows]))
        return Batch(
            inputs=inputs,
            tasks=[it.example.task for it, _, _ in rows],
            ids=[it.example.id for it, _, _ in rows],
            audio_seconds=float(sum(it.duration for it, _, _ in rows)),
            bad=bad,
            position=position,
        )


def transcript(item: Item) -> str | None:
    """The words spoken in the item's clip, where its target is them (a transcription task whose
    answer is in the spoken language: ASR and its timestamped variant); None elsewhere."""
    example = item.example
    if not item.task.transcribes_speech or example.audio_lang != example.text_lang:
        return None
    if example.words:
        return " ".join(str(w[0]) for w in example.words)
    return example.references[0]


CTC_INPUTS = ("ctc_targets", "ctc_lengths")  # what ctc_targets adds to a batch


def ctc_targets(processor: AudioProcessor, items: list[Item]) -> dict[str, torch.Tensor]:
    """``ctc_targets`` (B, S) the transcripts' token ids, padded with 0, and ``ctc_lengths`` (B,),
    0 for an item without a transcript (:func:`transcript`), as :meth:`AudioLM.forward` takes them."""
    texts = [transcript(item) for item in items]
    ids = [processor.tokenizer(t, add_special_tokens=False)["input_ids"] if t else [] for t in texts]
    targets = torch.zeros(len(ids), max(1, max(map(len, ids))), dtype=torch.long)
    for row, tokens in enumerate(ids):
        targets[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    lengths = torch.tensor([len(t) for t in ids], dtype=torch.long)
    return dict(zip(CTC_INPUTS, (targets, lengths), strict=True))


class IdentityDataset(torch.utils.data.Dataset):
    """A dataset whose item is its index: the batch sampler's (position, index) pairs pass
    through to the collator unchanged, so loading happens in the collator (and in workers)."""

    def __getitem__(self, key):
        return key

    def __len__(self) -> int:  # never consulted by a DataLoader with a batch_sampler
        return 0


class PositionedBatches:
    """The sampler's micro-batches tagged with their global stream positions, as a batch sampler."""

    def __init__(self, sampler: MixtureSampler, start: int):
        self.sampler = sampler
        self.start = start

    def __iter__(self):
        position = self.start + self.sampler.rank
        for batch in self.sampler.iterate(self.start):
            yield [(position, index) for index in batch]
            position += self.sampler.world_size


def make_loader(
    sampler: MixtureSampler, start: int, collator: Collator, num_workers: int
) -> torch.utils.data.DataLoader:
    """An endless loader of :class:`Batch` from global position ``start``."""
    return torch.utils.data.DataLoader(
        IdentityDataset(),
        batch_sampler=PositionedBatches(sampler, start),
        collate_fn=collator,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
    )


def first_usable_batch(collator: Collator, n_items: int, bad: BadDataLog) -> Batch:
    """A one-example batch from the first item whose audio loads (the zero-weight stand-in)."""
    for i in range(n_items):
        batch = collator([(-1, i)])
        for item in batch.bad:
            bad.record(item)
        if batch.inputs is not None:
            return batch
    raise TrainingAborted("no training example could be loaded: every one is bad data (see the messages above)")


def to_device(inputs: dict[str, torch.Tensor] | None, device: torch.device | str) -> dict[str, torch.Tensor]:
    """A batch's inputs on ``device``; the batches the loop runs always have some (see first_usable_batch)."""
    if inputs is None:
        raise ValueError("a batch whose every item failed to load has no inputs to run")
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
