"""Streamed training from shard sets (:mod:`qaudio.shards`): the drop-in for the manifest path's
(sampler, loader) pair when ``--recipes`` names ``shards:LOCATION`` entries.

Nothing is listed up front: start-up reads each set's ``index.json`` (and the first few examples,
for a from-scratch tokenizer), so its time and memory do not grow with the corpus.

Who reads what. Every process (rank, from accelerate) runs ``num_workers`` DataLoader workers
(worker id from torch), each one *reader*; with R = processes x workers readers, reader r takes
the shards k with k % R == r of every set. A set with fewer shards than readers is shared
example-wise: the readers on one shard keep every c-th of its examples, each a different phase.
So the readers' parts are disjoint and, together, the whole set. Each reader goes through its
part in a fresh seeded order every epoch, without end.

The buffer. A reader fills a *window* (batch size x ``--bucket-size`` examples), drawing each
slot's set by temperature (:func:`~.mixing.task_weights` over the sets' example counts, as the
manifest path mixes tasks), sorts the window by duration and cuts it into micro-batches by
examples and total seconds (:func:`~.mixing.length_grouped_batches`: dynamic bucketing), and
yields them in a random order. Unusable examples (undecodable audio, empty targets, clips longer
than the encoder window) travel with the batch as :class:`~.bad_data.BadItem` records, for the
main process to count as on the manifest path. Rows are collated by :meth:`Collator.collate`.

Exact resume. A reader's state is where its current window began (per set: epoch, shard position,
examples read in that shard), the buffer RNG's state at that moment, and how many of the window's
batches it has yielded. Resuming re-reads that one window (at most a window of examples, not the
corpus) and skips the batches already trained on. The main process keeps the state of the last
batch it *consumed* from each worker (workers run ahead, prefetching), and :class:`StreamLoader`
is registered with ``accelerator.register_for_checkpointing``, so it lands in every checkpoint.

Dev examples. A set written with its dev split (``dev-*.tar``, :mod:`qaudio.shards`) gives the
run its dev loss: every process reads the first ``--max-dev-examples`` of each trained task from
the sets' dev shards, in order (:func:`read_dev`, a bounded read that stops once each task has its
count), and the loop's dev pass scores them as it scores a manifest run's dev items.

Why windows rather than a reservoir buffer: a reservoir's contents would have to be saved (audio
included) or replayed from the epoch's start to resume exactly; a window is re-read from one
cursor. Mixing across sets happens inside each window, ordering across shards by the per-epoch
shard shuffle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..audio import AudioError
from ..shards import ShardIndex, ShardSample, read_index, read_shard
from .bad_data import BadDataLog, BadItem
from .batching import Batch, Collator, load_clip
from .corpus import Item, _check_trainable, fit_to_window, parse_tasks
from .mixing import length_grouped_batches, task_weights

SHARDS = "shards"  # the --recipes name of a shard set: shards:DIR, shards:DIR/index.json, shards:URL
HEAD_EXAMPLES = 2000  # examples read per set at start-up: a from-scratch tokenizer's texts
HEAD_AUDIO = 256  # of those, kept with their audio: the timing probe's batches and the all-bad fallback
# Why --cache-encoder and shard sets do not combine (the design that would: docs/shards.md).
STREAMED_CACHE_REFUSAL = (
    "--cache-encoder is not available when streaming shard sets (--recipes shards:...). The cache is "
    "computed before the first step from a list of every example, a start-up cost that grows with the "
    "corpus, which streaming exists to avoid; and a cache filled while the stream runs would let a resumed "
    "run read stored features where the uninterrupted run computed them, so its losses would no longer be "
    "exactly the same. Drop --cache-encoder: the frozen encoder then runs in each step, which costs nothing "
    "extra on a single pass over a large corpus (each clip is encoded once either way). For several epochs "
    "over a corpus that fits on disk, train from its recipe instead (--recipes RECIPE:ROOT --cache-encoder DIR)"
)


# ---- which shard sets -----------------------------------------------------------------------------


def shard_locations(recipes: str) -> list[str] | None:
    """The locations of ``shards:LOCATION`` entries in ``--recipes``; None when it names none."""
    parts = [p.strip() for p in recipes.split(",") if p.strip()]
    found = [p[len(SHARDS) + 1 :] for p in parts if p.startswith(SHARDS + ":")]
    if not found:
        return None
    if len(found) != len(parts):
        raise ValueError(
            f"--recipes {recipes!r} mixes shard sets ({SHARDS}:LOCATION) with recipes; stream all "
            f"of them: write each recipe as shards first (`qaudio data RECIPE --root ROOT --shards OUT`)"
        )
    if any(not loc for loc in found):
        raise ValueError(
            f"--recipes: {SHARDS}: needs a location, e.g. {SHARDS}:/data/ls-train or "
            f"{SHARDS}:https://host/ls-train/index.json"
        )
    return found


def mixture(indexes: list[ShardIndex], listed: list[str], temperature: float) -> list[float]:
    """Each set's sampling probability: :func:`task_weights` over the sets' example counts (of the
    asked tasks, from their indexes); a set is listed once per listed task it holds, so a task
    listed twice oversamples its sets. ``listed`` ["all"]: every task counts, each set once."""
    labels = [f"{k}" for k in range(len(indexes))]
    every = listed == ["all"]
    missing = [t for t in dict.fromkeys(listed) if not every and not any(ix.tasks.get(t) for ix in indexes)]
    if missing:
        raise ValueError(
            f"no shard set holds examples of task(s) {', '.join(missing)}; the sets hold "
            + "; ".join(f"{ix.location}: {', '.join(ix.tasks)}" for ix in indexes)
        )
    sizes = {
        lab: sum(n for t, n in ix.tasks.items() if every or t in listed)
        for lab, ix in zip(labels, indexes, strict=True)
    }
    times = [
        lab
        for lab, ix in zip(labels, indexes, strict=True)
        for t in (["all"] if every else listed)
        if (every or t in ix.tasks) and sizes[lab] > 0
    ]
    if not times:
        raise ValueError(
            f"the shard sets hold none of the tasks {', '.join(listed)}; they hold "
            + "; ".join(f"{ix.location}: {', '.join(ix.tasks)}" for ix in indexes)
        )
    weights = task_weights(sizes, times, temperature)
    return [weights.get(lab, 0.0) for lab in labels]


# ---- one reader's part of a set -------------------------------------------------------------------


def reader_pieces(n_shards: int, reader: int, readers: int) -> list[tuple[int, int, int]]:
    """(shard, stride, phase) pieces of a set for one reader: it keeps a shard's examples whose
    offset % stride == phase. Whole shards round-robin when there are enough; else shared."""
    if n_shards >= readers:
        return [(k, 1, 0) for k in range(reader, n_shards, readers)]
    k = reader % n_shards
    return [(k, len(range(k, readers, n_shards)), reader // n_shards)]


class SetCursor:
    """Reads one reader's part of one set, example by example, from (epoch, position, offset)."""

    def __init__(self, index: ShardIndex, pieces: list[tuple[int, int, int]], seed: int, key: tuple[int, int]):
        self.index, self.pieces, self.seed, self.key = index, pieces, seed, key
        self.epoch, self.pos, self.offset = 0, 0, 0  # offset: examples of the current shard read past
        self._it: Iterator[ShardSample] | None = None

    def order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, 0x73686172, *self.key, self.epoch]).permutation(len(self.pieces))

    def state(self) -> list[int]:
        return [self.epoch, self.pos, self.offset]

    def seek(self, state: list[int]) -> None:
        self.epoch, self.pos, self.offset = state
        self._it = None

    def next(self) -> ShardSample:
        """The next example of this reader's part (a new epoch begins after the last piece)."""
        empty_pieces = 0
        while True:
            if self._it is None:
                shard = self.pieces[self.order()[self.pos]][0]
                self._it = read_shard(self.index, shard, skip=self.offset)
            _, stride, phase = self.pieces[self.order()[self.pos]]
            for sample in self._it:
                self.offset += 1
                if sample.offset % stride == phase:
                    return sample
            self._it, self.offset = None, 0
            self.pos += 1
            empty_pieces += 1
            if self.pos == len(self.pieces):
                self.pos, self.epoch = 0, self.epoch + 1
            if empty_pieces > len(self.pieces):
                raise ValueError(f"{self.index.location}: this reader's shards hold no examples")


@dataclass
class StreamOptions:
    """What shapes the stream (from TrainConfig)."""

    batch_size: int
    batch_seconds: float
    bucket_size: int
    seed: int
    style: str  # prompt style
    max_seconds: float  # the encoder window
    long_audio: str  # skip | chunk


class _Collected:
    """A BadDataLog stand-in in workers: the items travel with the batch to the main process."""

    strict = False

    def __init__(self):
        self.items: list[BadItem] = []

    def record(self, item: BadItem) -> None:
        self.items.append(item)


def to_items(
    sample: ShardSample, label: str, tasks: dict, keep_all: bool, opts: StreamOptions, bad: _Collected
) -> list[Item]:
    """A streamed example -> the items it trains as (none if skipped, several if chunked)."""
    ex = sample.example
    source = f"{label}, shard {sample.shard}, example {sample.offset}"
    if ex.task not in tasks:
        if keep_all:
            bad.record(BadItem("unknown task", ex.id, ex.audio, f"task {ex.task!r} is not a known task", source))
        return []
    item = Item(ex, tasks[ex.task], source)
    log = cast(BadDataLog, bad)  # duck-typed: record() and strict are all the checks use
    if not _check_trainable(item, opts.style, log, check_file=False):
        return []
    return fit_to_window([item], opts.max_seconds, opts.long_audio, log)


class ShardStream(torch.utils.data.IterableDataset):
    """Endless micro-batches (:class:`Batch`) of one process, read by ``num_workers`` workers."""

    def __init__(
        self,
        indexes: list[ShardIndex],
        probs: list[float],
        tasks: dict,
        keep_all: bool,
        collator: Collator,
        opts: StreamOptions,
        rank: int,
        world: int,
        num_workers: int,
        window: int,
        resume: dict | None = None,
    ):
        self.indexes, self.probs, self.tasks, self.keep_all = indexes, np.asarray(probs, float), tasks, keep_all
        self.collator, self.opts, self.rank, self.world, self.workers = collator, opts, rank, world, max(1, num_workers)
        self.window = window
        self.resume = resume or {"rotation": 0, "slots": {}}

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        slot = ((info.id if info else 0) + self.resume["rotation"]) % self.workers
        return self.read(slot, self.resume["slots"].get(slot))

    def read(self, slot: int, state: dict | None) -> Iterator[Batch]:
        readers = self.world * self.workers
        reader = self.rank * self.workers + slot
        cursors = [
            SetCursor(ix, reader_pieces(len(ix.shards), reader, readers), self.opts.seed, (s, reader))
            for s, ix in enumerate(self.indexes)
        ]
        rng = np.random.default_rng([self.opts.seed, 0x6D6978, reader])  # the buffer's draws and shuffles
        skip, made = 0, 0  # batches of this window already trained on; batches before this window
        if state is not None:
            for c, st in zip(cursors, state["cursors"], strict=True):
                c.seek(st)
            rng.bit_generator.state = state["rng"]
            skip, made = state["skip"], state["made"]
        while True:
            start = {"cursors": [c.state() for c in cursors], "rng": rng.bit_generator.state, "made": made}
            draws = rng.choice(len(cursors), size=self.window, p=self.probs)  # a set per slot: the mixture
            items, blobs, bad = [], [], _Collected()
            for s in range(len(cursors)):
                for _ in range(int((draws == s).sum())):
                    sample = cursors[s].next()
                    for item in to_items(sample, f"shards {s}", self.tasks, self.keep_all, self.opts, bad):
                        items.append(item)
                        blobs.append(sample.audio)
            durations = np.array([it.duration for it in items], dtype=np.float64)
            batches = (
                length_grouped_batches(np.arange(len(items)), durations, self.opts.batch_size, self.opts.batch_seconds)
                if items
                else []
            )
            order = rng.permutation(len(batches))
            if not batches:  # a window of bad examples only: report them, stay aligned with other processes
                if not skip:
                    yield Batch(None, bad=bad.items, position=made, stream={**start, "skip": 1, "slot": slot})
                skip, made = 0, made + 1
                continue
            for j, b in enumerate(order):
                if j < skip:
                    continue
                rows = [items[i] for i in batches[b]]
                yield self.collate(
                    rows,
                    [blobs[i] for i in batches[b]],
                    bad.items if j == 0 else [],
                    made + j,
                    {**start, "skip": j + 1, "slot": slot},
                )
            skip, made = 0, made + len(batches)

    def collate(self, items: list[Item], blobs: list[bytes], bad: list[BadItem], position: int, state: dict) -> Batch:
        rows, unusable = decode_rows(items, blobs, position, self.opts.max_seconds)
        batch = self.collator.collate(rows, bad + unusable, position)
        batch.stream = state
        return batch


def decode_rows(
    items: list[Item], blobs: list[bytes], position: int, max_seconds: float
) -> tuple[list[tuple[Item, int, np.ndarray]], list[BadItem]]:
    """(item, position, samples (T,)) rows for :meth:`Collator.collate`, and the items whose
    audio bytes cannot be used (as BadItems)."""
    rows, bad = [], []
    for item, blob in zip(items, blobs, strict=True):
        try:
            rows.append((item, position, load_clip(item, max_seconds, source=blob)))  # (T,)
        except AudioError as e:  # undecodable, empty, or longer than the window once decoded
            bad.append(BadItem("unusable audio", item.example.id, item.example.audio, str(e), item.source))
    return rows, bad


def _identity(batch):
    return batch


class StreamLoader:
    """The streamed run's loader and its checkpointed state (``register_for_checkpointing``).

    :meth:`loader` replaces ``make_loader(sampler, position, collator, workers)``; the state saved is
    every process's consumed position (gathered: accelerate writes the main process's copy).
    """

    def __init__(self, stream: ShardStream, num_workers: int, accelerator: Any = None):
        self.stream, self.num_workers, self.accelerator = stream, num_workers, accelerator
        self.consumed: dict[int, dict] = {}  # slot -> state after the last batch consumed from it
        self.next_slot = 0  # the slot whose batch comes next (the loader takes workers in turn)

    def loader(self) -> Iterator[Batch]:
        """Endless batches from the consumed position; the DataLoader's iterator (its seed drawn from
        torch's RNG, its workers started) is made here, not at the first batch."""
        self.stream.resume = {"rotation": self.next_slot, "slots": dict(self.consumed)}
        workers = self.num_workers
        data = torch.utils.data.DataLoader(
            self.stream,
            batch_size=None,
            collate_fn=_identity,
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers else None,
        )
        return self._consume(iter(data))

    def _consume(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        workers = self.num_workers
        for batch in batches:
            assert batch.stream is not None  # every streamed batch carries its reader state
            slot = batch.stream["slot"]
            self.consumed[slot] = batch.stream
            self.next_slot = (slot + 1) % max(1, workers)
            yield batch

    def local_state(self) -> dict:
        return {"workers": max(1, self.num_workers), "next": self.next_slot, "consumed": dict(self.consumed)}

    def state_dict(self) -> dict:
        states = [self.local_state()]
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            states = gather_object(states)
        return {"ranks": states}

    def load_state_dict(self, state: dict) -> None:
        rank = self.accelerator.process_index if self.accelerator is not None else 0
        if len(state["ranks"]) <= rank:
            raise ValueError(
                f"the checkpoint's stream was read by {len(state['ranks'])} process(es); resume with as many"
            )
        mine = state["ranks"][rank]
        if mine["workers"] != max(1, self.num_workers):
            raise ValueError(
                f"the checkpoint's stream was read by {mine['workers']} DataLoader worker(s) per process, "
                f"this run asks for {max(1, self.num_workers)} (--num-workers): shards are dealt out per "
                "worker, so resume with the same --num-workers"
            )
        self.next_slot = mine["next"]
        self.consumed = {int(k): v for k, v in mine["consumed"].items()}


# ---- the run -------------------------------------------------------------------------------------


class HeadCollator(Collator):
    """A collator over the first examples of the stream (bytes in memory): the loop's stand-in
    batch when a process's micro-batch holds only bad data (``first_usable_batch``)."""

    def __init__(self, *args: Any, blobs: list[bytes], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.blobs = blobs

    def __call__(self, request: list[tuple[int, int]]) -> Batch:
        position = request[0][0] if request else -1
        rows, bad = decode_rows(
            [self.items[i] for _, i in request], [self.blobs[i] for _, i in request], position, self.max_seconds
        )
        return self.collate(rows, bad, position)


def read_head(
    indexes: list[ShardIndex], tasks: dict, keep_all: bool, opts: StreamOptions, n: int = HEAD_EXAMPLES
) -> tuple[list[Item], list[bytes]]:
    """The first ``n`` usable examples of each set (in shard order) with their audio."""
    items, blobs = [], []
    for s, ix in enumerate(indexes):
        taken = 0
        for k in range(len(ix.shards)):
            for sample in read_shard(ix, k):
                for item in to_items(sample, f"shards {s}", tasks, keep_all, opts, _Collected()):
                    items.append(item)
                    blobs.append(sample.audio)
                    taken += 1
                if taken >= n:
                    break
            if taken >= n:
                break
    return items, blobs


def read_dev(
    indexes: list[ShardIndex], tasks: dict, trained: list[str], per_task: int, opts: StreamOptions, bad: Any
) -> tuple[list[Item], list[bytes]]:
    """The first ``per_task`` dev items of each trained task, from the sets' dev splits in order
    (deterministic), with their audio bytes. Reads no further than it needs: a dev shard is opened
    only while one of the tasks its index lists still lacks items. Unusable examples go to ``bad``."""
    from .setup import dev_subset

    items: list[Item] = []
    blobs: list[bytes] = []
    counts = dict.fromkeys(trained, 0)

    def missing() -> set[str]:
        return {t for t, n in counts.items() if n < per_task}

    for s, dev in enumerate(ix.dev for ix in indexes):
        for k in range(len(dev.shards) if dev is not None and missing() else 0):
            assert dev is not None
            if not missing() & set(dev.shards[k].tasks):
                continue  # the index says this shard holds none of the tasks still short
            for sample in read_shard(dev, k):
                if sample.example.task not in missing():
                    if not missing():
                        break
                    continue
                for item in to_items(sample, f"shards {s} dev", tasks, False, opts, bad):
                    items.append(item)
                    blobs.append(sample.audio)
                    counts[item.example.task] += 1
    kept = dev_subset(items, trained, per_task)
    chosen = {id(it) for it in kept}
    return kept, [b for it, b in zip(items, blobs, strict=True) if id(it) in chosen]


def build_stream_run(cfg: Any, accelerator: Any, locations: list[str], resume_from: Path | None, log: Any) -> Any:
    """The streamed counterpart of :func:`~.setup.build_run`: indexes -> model -> ShardStream."""
    from ..model.lengths import max_seconds as encoder_window
    from ..specs import get_task, registry
    from .augmentation import use_encoder_cache
    from .setup import Run, augmenter_for, build_model, mixture_sampler, model_config_for

    if cfg.cache_encoder:
        raise ValueError(STREAMED_CACHE_REFUSAL)
    if cfg.mix_by != "task":  # a stream draws whole shard sets; it cannot see a language pair before reading it
        raise ValueError(
            "--mix-by pair needs the examples listed up front; streamed shard sets are mixed per set "
            "(--temperature over the sets' sizes). Write one shard set per language pair and list "
            "them in --recipes to balance pairs, or train from the recipe's manifests"
        )
    if cfg.mix_weights:  # its groups are tasks or pairs of listed examples; a stream's unit is the set
        raise ValueError(
            "--mix-weights pins tasks or language pairs of examples listed up front; streamed shard sets "
            "are mixed per set by --temperature over their sizes. Oversample a set by listing its task "
            "twice in --tasks, or train from the recipe's manifests"
        )
    t0 = time.perf_counter()
    indexes = [read_index(loc) for loc in locations]
    keep_all = cfg.tasks.strip() == "all"
    listed = parse_tasks(cfg.tasks)
    tasks = dict(registry("tasks")) if keep_all else {t.name: t for t in (get_task(n) for n in listed)}
    probs = mixture(indexes, listed, cfg.temperature)
    style_config = model_config_for(cfg)
    opts = StreamOptions(
        cfg.batch_size,
        cfg.batch_seconds,
        cfg.bucket_size,
        cfg.seed,
        style_config.prompt_style,
        encoder_window(),
        cfg.long_audio,
    )  # the processor's own window once the model is built
    head, blobs = read_head(indexes, tasks, keep_all, opts)
    if not head:
        raise ValueError(f"--recipes {cfg.recipes}: no usable training example in the first {HEAD_EXAMPLES} of any set")
    texts = None
    if style_config.llm.source == "scratch":
        from .corpus import tokenizer_texts

        texts = tokenizer_texts(head, opts.style)  # the first examples' texts: the corpus is not listed
    model = build_model(cfg, texts, resume_from / "tokenizer" if resume_from else None)
    processor = model.processor
    opts.max_seconds = processor.max_audio_seconds
    bad = BadDataLog(strict=cfg.strict)
    head, blobs = head[:HEAD_AUDIO], blobs[:HEAD_AUDIO]  # the texts are in the tokenizer now; keep little audio
    collator = HeadCollator(processor, head, opts.style, cfg.seed, opts.max_seconds, blobs=blobs)
    examples = sum(n for ix in indexes for t, n in ix.tasks.items() if keep_all or t in tasks)  # an epoch
    seconds = sum(ix.seconds for ix in indexes)
    per_batch = cfg.batch_size or max(1.0, cfg.batch_seconds / max(seconds / max(examples, 1), 1e-3))
    window = max(1, math.ceil(per_batch) * cfg.bucket_size)
    # The head's own mixture sampler: what --epochs (examples per micro-batch) and the timing probe
    # (--max-minutes, --eta: real batches, loaded, forward and backward) read; training reads the stream.
    sampler = mixture_sampler(head, sorted({item.example.task for item in head}), 1.0, cfg, accelerator)
    augment = augmenter_for(cfg, opts.max_seconds, log)
    use_encoder_cache(augment.spec if augment else None, None, log)  # feature-mask needs a cache: refused here
    rows_only = Collator(
        processor, [], opts.style, cfg.seed, opts.max_seconds, augment=augment
    )  # collate() only: no items to ship to workers
    stream = ShardStream(
        indexes,
        probs,
        tasks,
        keep_all,
        rows_only,
        opts,
        accelerator.process_index,
        accelerator.num_processes,
        cfg.num_workers,
        window,
    )
    trained = sorted({t for ix in indexes for t in ix.tasks if keep_all or t in tasks})
    dev_items: list[Item] = []
    dev_collator: Collator = collator
    if cfg.dev_split != "none":
        without = [ix.location for ix in indexes if ix.dev is None]
        if without:
            log(
                f"qaudio train: no dev split in shard set(s) {', '.join(without)}: no dev loss from them. Write "
                "one with `qaudio data RECIPE --root ROOT --shards OUT --dev-split SPLIT` (sets written "
                "before dev splits were stored have none)"
            )
        dev_items, dev_blobs = read_dev(indexes, tasks, trained, cfg.max_dev_examples, opts, bad)
        dev_collator = HeadCollator(processor, dev_items, opts.style, cfg.seed, opts.max_seconds, blobs=dev_blobs)
    log(
        f"qaudio train: streaming {len(indexes)} shard set(s), {examples} examples, {seconds / 3600:.2f} h in "
        f"{sum(len(ix.shards) for ix in indexes)} shards, {len(dev_items)} dev examples "
        f"(start-up {time.perf_counter() - t0:.1f} s); mixture: "
        + ", ".join(f"{ix.location} p={p:.2f}" for ix, p in zip(indexes, probs, strict=True))
    )
    return Run(
        model,
        model.trainable_parameter_names(),
        [],
        dev_items,
        trained,
        examples,
        sampler,
        collator,
        dev_collator,
        bad,
        stream=StreamLoader(stream, cfg.num_workers, accelerator),
        score_items=dev_items,  # the dev split is read only as far as the dev loss needs (--max-dev-examples per task)
    )
