"""Task mixing by temperature sampling, and length-grouped micro-batches.

Temperature sampling over tasks follows the multilingual-MT practice (Arivazhagan et al.,
"Massively Multilingual Neural Machine Translation in the Wild", 2019, section 4.2; T5,
Raffel et al. 2020, section 3.5.2): task i is drawn with probability proportional to
``n_i ** (1/T)``; T = 1 samples by size, large T tends to uniform. A task listed ``m`` times
(nanochat's habit) has its weight multiplied by ``m``, so listing it twice oversamples it.

The groups the temperature balances are tasks, or (``--mix-by pair``) each task's language
pairs: ``asr en``, ``asr de``, ``s2tt en->de``... That is the unit Arivazhagan et al. balance.
By task, 400 German clips beside 3,000 English ones get 12% of the ASR draws whatever T is;
by pair, T lifts the small languages as it lifts small tasks.

``--mix-weights`` pins some groups' probabilities outright (``"asr en=0.28,ser=0.08"``) and the
other groups share what is left by the temperature rule. A temperature ties each share to the
group's size, so adding examples to one group moves every share; a pinned share stays where it
was put (the ``probabilities`` of Hugging Face ``datasets.interleave_datasets``).

Length grouping (the "megabatch" trick of fairseq and Hugging Face's LengthGroupedSampler):
draw a window of examples, sort it by duration, cut it into micro-batches, shuffle the
micro-batches. Padding then stays small while the order stays random.

The stream is a pure function of the seed: every process computes the same global sequence
of micro-batches and takes every ``world_size``-th one, so processes see different data
without talking to each other, and a resumed run regenerates the stream and skips the
micro-batches it had consumed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIX_BY = ("task", "pair")


def group_name(task: str, audio_lang: str, text_lang: str, several_pairs: bool) -> str:
    """``"aac"`` for a task with one language pair; ``"asr en"``, ``"s2tt en->de"`` otherwise."""
    if not several_pairs:
        return task
    return f"{task} {audio_lang}" if audio_lang == text_lang else f"{task} {audio_lang}->{text_lang}"


def mixing_groups(examples: Sequence[Any], by: str) -> list[str]:
    """Each example's mixing group: its task, or (``by="pair"``) its task and language pair,
    named as :func:`group_name` names them (a task with a single pair keeps its bare name)."""
    if by not in MIX_BY:
        raise ValueError(f"unknown mixing unit {by!r}; expected one of {', '.join(MIX_BY)}")
    if by == "task":
        return [ex.task for ex in examples]
    pairs: dict[str, set[tuple[str, str]]] = {}
    for ex in examples:
        pairs.setdefault(ex.task, set()).add((ex.audio_lang, ex.text_lang))
    return [group_name(ex.task, ex.audio_lang, ex.text_lang, len(pairs[ex.task]) > 1) for ex in examples]


def task_weights(sizes: dict[str, int], listed: Sequence[str], temperature: float) -> dict[str, float]:
    """Sampling probability per task (or mixing group): ``m_i * n_i ** (1/T)``, normalised.

    ``sizes``: examples per task; ``listed``: task names as given (repeats oversample).
    """
    if temperature <= 0:
        raise ValueError(f"mixing temperature must be > 0, got {temperature}")
    times = Counter(listed)
    missing = [t for t in times if sizes.get(t, 0) <= 0]
    if missing:
        raise ValueError(f"task(s) {', '.join(missing)} have no training examples")
    raw = {t: m * float(sizes[t]) ** (1.0 / temperature) for t, m in times.items()}
    total = sum(raw.values())
    return {t: w / total for t, w in raw.items()}


def parse_mix_weights(text: str) -> dict[str, float]:
    """``"asr en=0.28, ser=0.08"`` -> ``{"asr en": 0.28, "ser": 0.08}``; each a probability in (0, 1]."""
    pinned: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.rpartition("=")
        name = " ".join(name.split())  # "asr  en" and "asr en" name one group
        try:
            p = float(value)
        except ValueError:
            p = float("nan")
        if not sep or not name or not 0 < p <= 1:
            raise ValueError(
                f"--mix-weights: {part!r} is not GROUP=PROBABILITY with a probability in (0, 1], "
                "e.g. 'asr en=0.28,ser=0.08' (groups as the training log names them)"
            )
        if name in pinned:
            raise ValueError(f"--mix-weights names {name!r} twice")
        pinned[name] = p
    return pinned


def pin_weights(weights: dict[str, float], pinned: dict[str, float]) -> dict[str, float]:
    """``weights`` (probabilities per group) with the ``pinned`` groups set to their given
    probability and the others scaled to share the rest in their own proportions."""
    unknown = [g for g in pinned if g not in weights]
    if unknown:
        raise ValueError(
            f"--mix-weights names {', '.join(map(repr, unknown))}, not a mixing group of this run; "
            f"the groups are: {', '.join(sorted(weights))}"
        )
    total = sum(pinned.values())
    rest = [g for g in weights if g not in pinned]
    if not rest:
        if abs(total - 1) > 1e-3:
            raise ValueError(
                f"--mix-weights pins every group, so its probabilities must sum to 1; they sum to {total:g}"
            )
        return {g: pinned[g] / total for g in weights}
    if total >= 1:
        raise ValueError(
            f"--mix-weights pins probabilities summing to {total:g}, leaving nothing for "
            f"{', '.join(sorted(rest))}; pin less, or pin every group with probabilities summing to 1"
        )
    scale = (1 - total) / sum(weights[g] for g in rest)
    return {g: pinned[g] if g in pinned else weights[g] * scale for g in weights}


def length_grouped_batches(
    order: np.ndarray, durations: np.ndarray, batch_size: int, batch_seconds: float
) -> list[list[int]]:
    """Cut ``order`` (example indices) into micro-batches of similar duration.

    A micro-batch holds at most ``batch_size`` examples (0: no limit) and at most
    ``batch_seconds`` of padded audio, i.e. examples x longest clip (0: no limit); a single
    clip longer than the cap forms a micro-batch of its own.
    """
    ordered = order[np.argsort(durations[order], kind="stable")]  # shortest first
    batches: list[list[int]] = []
    current: list[int] = []
    for i in ordered.tolist():
        # Sorted ascending, so the clip being added is the longest of the batch.
        too_many = batch_size and len(current) + 1 > batch_size
        too_long = batch_seconds and (len(current) + 1) * durations[i] > batch_seconds
        if current and (too_many or too_long):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@dataclass
class MixtureSampler:
    """The global stream of micro-batches (lists of example indices) for one process.

    ``task_indices``: task -> indices (into the training example list) of its examples;
    ``weights``: task -> probability (from :func:`task_weights`); ``durations``: seconds per
    example index. Each task is read in a fresh random permutation per pass, so within a task
    every example is drawn once before any is drawn again.
    """

    task_indices: dict[str, list[int]]
    weights: dict[str, float]
    durations: np.ndarray
    batch_size: int
    batch_seconds: float = 0.0
    bucket_size: int = 50
    seed: int = 0
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if set(self.weights) - set(self.task_indices):
            raise ValueError(
                f"weights for tasks without examples: {sorted(set(self.weights) - set(self.task_indices))}"
            )
        self.tasks = sorted(self.weights)
        self.probs = np.array([self.weights[t] for t in self.tasks], dtype=np.float64)
        self.probs /= self.probs.sum()
        all_idx = np.concatenate([np.asarray(self.task_indices[t]) for t in self.tasks])
        if self.batch_size:
            per_batch = self.batch_size
        else:  # seconds-limited batches: size the window from the mean duration
            per_batch = max(1, int(self.batch_seconds / max(float(self.durations[all_idx].mean()), 1e-3)))
        # At most one corpus' worth per window, so a small corpus does not repeat an example in it.
        self.window = min(per_batch * self.bucket_size, -(-len(all_idx) // per_batch) * per_batch)

    def global_batches(self) -> Iterator[list[int]]:
        """The endless global sequence of micro-batches shared by every process."""
        rng = np.random.default_rng([self.seed, 0x6D6978])  # "mix": a stream of its own
        perms = {t: np.empty(0, dtype=np.int64) for t in self.tasks}
        cursors = dict.fromkeys(self.tasks, 0)
        passes = dict.fromkeys(self.tasks, 0)
        while True:
            draws = rng.choice(len(self.tasks), size=self.window, p=self.probs)  # task per slot
            counts = np.bincount(draws, minlength=len(self.tasks))
            window = []
            for k, t in enumerate(self.tasks):
                need = int(counts[k])
                while need:
                    if cursors[t] >= len(perms[t]):  # start a new pass over this task
                        perm_rng = np.random.default_rng([self.seed, 0x7065726D, k, passes[t]])
                        perms[t] = np.asarray(self.task_indices[t])[perm_rng.permutation(len(self.task_indices[t]))]
                        cursors[t], passes[t] = 0, passes[t] + 1
                    take = perms[t][cursors[t] : cursors[t] + need]
                    window.append(take)
                    cursors[t] += len(take)
                    need -= len(take)
            batches = length_grouped_batches(
                np.concatenate(window), self.durations, self.batch_size, self.batch_seconds
            )
            for j in rng.permutation(len(batches)):
                yield batches[j]

    def __iter__(self) -> Iterator[list[int]]:
        return self.iterate(0)

    def iterate(self, start: int = 0) -> Iterator[list[int]]:
        """This process's micro-batches from global position ``start`` (a multiple of world_size).

        Global micro-batch ``g`` goes to process ``g % world_size``; a resumed run passes the
        number of global micro-batches consumed before the checkpoint.
        """
        if start % self.world_size:
            raise ValueError(f"start position {start} is not a multiple of the {self.world_size} processes")
        for g, batch in enumerate(self.global_batches()):
            if g >= start and g % self.world_size == self.rank:
                yield batch

    def mean_batch_examples(self, windows: int = 4) -> float:
        """Examples per micro-batch, averaged over the first few windows (for planning steps)."""
        sizes = []
        target = windows * self.window
        for batch in self.global_batches():
            sizes.append(len(batch))
            if sum(sizes) >= target:
                break
        return float(np.mean(sizes))
