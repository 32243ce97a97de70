"""The self-training loop: rounds of pseudo-label, synthesize, retrain, measure.

Round 0 measures the starting model on the dev manifest. Each round then starts from the
best model so far and

1. ``pseudo/``: decodes the unlabeled clips twice, scores and filters them
   (:mod:`.pseudo_label`): ``scored.jsonl`` (every clip) and ``kept.jsonl``;
2. ``synth/``: measures the unlabeled audio (:mod:`.domain_stats`) and speaks the domain's
   text (kept pseudo-labels and ``--text``) with the synthesizer (:mod:`.synthesis`);
3. ``train.jsonl``: labeled + pseudo-labeled + synthetic examples, each source repeated
   or subsampled by its weight;
4. ``train/``: fine-tunes from the round's starting model (``train/model`` is the round's model);
5. ``dev/``: the dev report (the task's metric profile with 95% bootstrap intervals).

A round that does not lower the dev error rate by more than ``min_improvement`` counts
against ``patience``; the run stops when patience is spent. ``rounds.md`` has one line per
round, ``best.json`` names the best round's model.

Resuming: each step writes a ``DONE`` file into its folder when its outputs are complete; a
step with one is not redone, a step without one is redone from scratch, except training,
which resumes from its latest checkpoint. Rerunning the same command continues the run.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ..data import Example, read_manifest, write_manifest
from . import backend, pseudo_label
from .config import SelfTrainConfig
from .domain_stats import DomainStats, measure
from .synthesis import Synthesizer, SynthOptions, get_synthesizer
from .unlabeled import cut_clips

DONE = "DONE"
SOURCES = ("labeled", "pseudo", "synthetic")  # training sources, each with a weight in the config
# settings that must not change when a run folder is continued
SAME_ON_RESUME = ("model", "unlabeled", "dev", "text", "labeled", "lang", "max_clip_seconds")


def is_done(folder: Path) -> bool:
    return (folder / DONE).is_file()


def mark_done(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DONE).write_text("")


def weighted(examples: list[Example], weight: float, source: str, rng: np.random.Generator) -> list[Example]:
    """Each example ``floor(weight)`` times, plus a random ``weight - floor(weight)`` share once more."""
    whole, part = math.floor(weight), weight - math.floor(weight)
    out = []
    for ex in examples:
        times = whole + int(rng.random() < part)
        for k in range(times):
            out.append(replace(ex, id=f"{source}/{ex.id}" + (f"#{k}" if k else ""), meta={**ex.meta, "source": source}))
    return out


def labeled_examples(recipes: str | None) -> list[Example]:
    """The asr training examples of the labeled corpora (qaudio train's ``--recipes`` syntax)."""
    if not recipes:
        return []
    from ..recipe import load_examples
    from ..training.corpus import parse_recipes

    return [
        ex
        for spec in parse_recipes(recipes)
        for ex in load_examples(spec.name, spec.root, spec.train_split, task=backend.TASK)
    ]


def domain_text(kept: list[Example], text_file: str | None, limit: int, seed: int) -> list[str]:
    """The domain's sentences: the kept pseudo-labels, then the text file's lines; no repeats."""
    from ..synth.augment import read_sentences

    lines = [str(ex.target) for ex in kept] + (read_sentences(text_file) if text_file else [])
    unique = list(dict.fromkeys(" ".join(s.split()) for s in lines if s.strip()))
    if limit and len(unique) > limit:
        pick = np.random.default_rng(seed).choice(len(unique), size=limit, replace=False)
        unique = [unique[i] for i in sorted(pick)]
    return unique


class Run:
    """One self-training run folder."""

    def __init__(self, cfg: SelfTrainConfig, synthesizer: str | Synthesizer | None = None):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.synthesizer = get_synthesizer(synthesizer if synthesizer is not None else cfg.synthesizer)

    def log(self, message: str) -> None:
        if self.cfg.progress:
            print(f"qaudio self-train: {message}", file=sys.stderr, flush=True)

    # ---- the run

    def check_config(self) -> None:
        """The inputs exist, and a continued run is the same run: its inputs may not change."""
        if not (Path(self.cfg.model) / "config.json").is_file():
            raise FileNotFoundError(
                f"--model {self.cfg.model}: not a saved model directory (expected the config.json "
                "and weights that qaudio train writes into RUN/model)"
            )
        if not Path(self.cfg.dev).is_file():
            raise FileNotFoundError(f"--dev {self.cfg.dev}: no such manifest (expected a .jsonl with transcripts)")
        path = self.out / "config.json"
        if path.is_file():
            before = json.loads(path.read_text())
            changed = [k for k in SAME_ON_RESUME if before.get(k) != getattr(self.cfg, k)]
            if changed:
                raise ValueError(
                    f"{self.out} holds a run with other {', '.join(changed)} "
                    f"({', '.join(f'{k}: {before.get(k)!r}' for k in changed)}); "
                    "choose another --out or rerun with the same settings to continue it"
                )
        self.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.cfg.to_dict(), indent=1) + "\n")

    def clips(self) -> list[Example]:
        folder = self.out / "clips"
        if not is_done(folder):
            self.log(f"reading {self.cfg.unlabeled}, cutting recordings longer than {self.cfg.max_clip_seconds} s")
            clips = cut_clips(self.cfg.unlabeled, folder / "audio", self.cfg.max_clip_seconds, self.cfg.lang)
            folder.mkdir(parents=True, exist_ok=True)
            write_manifest(clips, folder / "clips.jsonl", relative_to_manifest=False)
            mark_done(folder)
        return list(read_manifest(folder / "clips.jsonl"))

    def measure_dev(self, model_dir: Path, folder: Path) -> dict:
        if not is_done(folder):
            self.log(f"measuring {model_dir} on {self.cfg.dev}")
            score = backend.evaluate_dev(
                model_dir,
                self.cfg.dev,
                folder,
                self.cfg.infer_batch_size,
                self.cfg.bootstrap,
                self.cfg.max_new_tokens or None,
            )
            (folder / "dev.json").write_text(json.dumps(asdict(score), indent=1) + "\n")
            mark_done(folder)
        return json.loads((folder / "dev.json").read_text())

    def pseudo(self, model_dir: Path, clips: list[Example], folder: Path) -> tuple[list[Example], dict]:
        if not is_done(folder):
            self.log(f"pseudo-labelling {len(clips)} clips with {model_dir}")
            model = backend.load_model(model_dir, self.cfg.device, self.cfg.max_new_tokens or None)
            scored = pseudo_label.pseudo_label(
                model, clips, self.cfg.num_beams, self.cfg.keep_decode, self.cfg.lang, self.cfg.infer_batch_size
            )
            kept, dropped = pseudo_label.select(
                scored, pseudo_label.FilterConfig(self.cfg.min_logprob, self.cfg.min_agreement, self.cfg.keep_fraction)
            )
            pseudo_label.write(scored, kept, folder)
            (folder / "filter.json").write_text(
                json.dumps({"clips": len(scored), "kept": len(kept), "dropped": dropped}, indent=1) + "\n"
            )
            mark_done(folder)
        return list(read_manifest(folder / "kept.jsonl")), json.loads((folder / "filter.json").read_text())

    def synthesize(self, clips: list[Example], kept: list[Example], folder: Path, seed: int) -> list[Example]:
        if self.synthesizer is None:
            return []
        if not is_done(folder):
            folder.mkdir(parents=True, exist_ok=True)
            stats: DomainStats = measure(clips, kept, seed=seed)
            (folder / "stats.json").write_text(json.dumps(stats.to_dict(), indent=1) + "\n")
            sentences = domain_text(kept, self.cfg.text, self.cfg.max_synth_sentences, seed)
            manifest = folder / "train.jsonl"
            if sentences:
                self.log(
                    f"synthesizing {len(sentences)} domain sentences (rate {stats.words_per_second} words/s, "
                    f"F0 {stats.f0_median} Hz, SNR {stats.snr_db} dB)"
                )
                voices = tuple(v.strip() for v in self.cfg.voices.split(",")) if self.cfg.voices else None
                options = SynthOptions(
                    self.cfg.lang, voices, self.cfg.max_voices, True, self.cfg.synth_copies, seed, self.cfg.workers
                )
                manifest = Path(self.synthesizer(sentences, stats, folder, options))
            else:
                self.log("no domain text (no pseudo-label kept, no --text): no synthetic speech this round")
                write_manifest([], manifest)
            if manifest != folder / "train.jsonl":  # a user's synthesizer may write elsewhere
                write_manifest(read_manifest(manifest), folder / "train.jsonl", relative_to_manifest=False)
            mark_done(folder)
        return list(read_manifest(folder / "train.jsonl"))

    def mixture(self, sources: dict[str, list[Example]], folder: Path, seed: int) -> dict[str, int]:
        path = folder / "train.jsonl"
        counts_path = folder / "train_sources.json"
        if not counts_path.is_file():
            rng = np.random.default_rng(seed)
            weights = {
                "labeled": self.cfg.weight_labeled,
                "pseudo": self.cfg.weight_pseudo,
                "synthetic": self.cfg.weight_synthetic,
            }
            mixed = {name: weighted(sources[name], weights[name], name, rng) for name in SOURCES}
            examples = [ex for name in SOURCES for ex in mixed[name]]
            if not examples:
                raise ValueError(
                    "nothing to train on this round: no labeled data, no pseudo-label kept and no "
                    "synthetic speech; lower --min-logprob / --min-agreement, or add --text or --labeled"
                )
            write_manifest(examples, path, relative_to_manifest=False)
            counts_path.write_text(json.dumps({n: len(mixed[n]) for n in SOURCES}, indent=1) + "\n")
        return json.loads(counts_path.read_text())

    def retrain(self, init: Path, folder: Path, seed: int) -> Path:
        model = folder / "train" / "model"
        if not is_done(folder / "train"):
            self.log(f"fine-tuning {init} for {self.cfg.train_steps} steps")
            options = {}
            if self.cfg.train_config:
                from ..training.config import load_yaml

                options.update({str(k).replace("-", "_"): v for k, v in load_yaml(self.cfg.train_config).items()})
            options.update(
                max_steps=self.cfg.train_steps,
                batch_size=self.cfg.batch_size,
                lr=self.cfg.lr,
                precision=self.cfg.precision,
                threads=self.cfg.threads,
                save_every=self.cfg.save_every,
                seed=seed,
                progress=self.cfg.progress,
            )
            model = backend.train_round(init, folder / "train.jsonl", folder / "train", **options)
            mark_done(folder / "train")
        return model

    def run(self) -> Path:
        cfg = self.cfg
        self.check_config()
        clips = self.clips()
        records = [self.record(0, Path(cfg.model), self.measure_dev(Path(cfg.model), self.out / "round-0" / "dev"))]
        best, misses = records[0], 0
        labeled = labeled_examples(cfg.labeled)
        for r in range(1, cfg.rounds + 1):
            folder = self.out / f"round-{r}"
            seed = cfg.seed + r
            start = Path(best["model"])
            kept, filtered = self.pseudo(start, clips, folder / "pseudo")
            synthetic = self.synthesize(clips, kept, folder / "synth", seed)
            counts = self.mixture({"labeled": labeled, "pseudo": kept, "synthetic": synthetic}, folder, seed)
            model = self.retrain(start, folder, seed)
            dev = self.measure_dev(model, folder / "dev")
            records.append(self.record(r, model, dev, start, filtered, counts, len(synthetic)))
            improved = dev["value"] < best["dev"]["value"] - cfg.min_improvement
            self.log(
                f"round {r}: dev {dev['metric']} {dev['value']:.2f} (best so far {best['dev']['value']:.2f}, "
                f"round {best['round']})" + ("" if improved else ": no improvement")
            )
            if improved:
                best, misses = records[-1], 0
            else:
                misses += 1
            self.write_table(records, best)
            if misses >= cfg.patience:
                self.log(f"stopping: {misses} round(s) without improvement")
                break
        self.write_table(records, best)
        (self.out / "best.json").write_text(json.dumps(best, indent=1) + "\n")
        return Path(best["model"])

    # ---- the record

    @staticmethod
    def record(
        r: int,
        model: Path,
        dev: dict,
        start: Path | None = None,
        filtered: dict | None = None,
        counts: dict | None = None,
        synthetic_clips: int = 0,
    ) -> dict:
        return {
            "round": r,
            "model": str(model),
            "started_from": str(start) if start else None,
            "dev": dev,
            "pseudo": filtered,
            "synthetic_clips": synthetic_clips,
            "train": counts,
        }

    def write_table(self, records: list[dict], best: dict) -> None:
        for rec in records:
            (self.out / f"round-{rec['round']}").mkdir(parents=True, exist_ok=True)
            (self.out / f"round-{rec['round']}" / "round.json").write_text(json.dumps(rec, indent=1) + "\n")
        (self.out / "rounds.md").write_text(rounds_table(records, best["round"]), encoding="utf-8")


def rounds_table(records: list[dict], best_round: int) -> str:
    """The run's rounds as a Markdown table (round 0 is the starting model)."""
    metric = records[0]["dev"]["metric"].upper()
    lines = [
        f"| round | pseudo-labels kept | synthetic clips | training examples | dev {metric} (95% CI) | |",
        "|---|---|---|---|---|---|",
    ]
    for rec in records:
        dev = rec["dev"]
        ci = f" [{dev['low']:.2f}, {dev['high']:.2f}]" if dev.get("low") is not None else ""
        if rec["round"] == 0:
            kept = synth = total = "-"
        else:
            kept = f"{rec['pseudo']['kept']} of {rec['pseudo']['clips']}"
            synth = str(rec["synthetic_clips"])
            total = str(sum(rec["train"].values()))
        mark = "best" if rec["round"] == best_round else ""
        lines.append(
            f"| {rec['round']} | {kept} | {synth} | {total} | {dev['value']:.2f}{ci} (n={dev['n']}) | {mark} |"
        )
    return "\n".join(lines) + "\n"


def self_train(cfg: SelfTrainConfig, synthesizer: str | Callable | None = None) -> Path:
    """Run (or continue) self-training per ``cfg``; returns the best round's model directory.

    ``synthesizer``: a name in :data:`qaudio.selftrain.synthesis.SYNTHESIZERS` or a callable
    ``fn(sentences, stats, out_dir, options) -> manifest path`` (default: ``cfg.synthesizer``).
    """
    return Run(cfg, synthesizer).run()
