"""Self-training demonstration, offline: adapt a model of the synthetic corpus to a shifted domain.

The source model was trained on ``qaudio synth``'s corpus (``make demo`` writes one to
``runs/demo/model``): a few hundred everyday words, eSpeak NG voices, clean audio. The shifted
domain made here is plant maintenance: a template grammar with new vocabulary (pump, valve,
turbine, leaking, ...) mixed with words the model knows (colours, numbers), spoken with
``tts-augment`` by the held-out voices (en+m2, en+f3) over pink noise at 5-15 dB SNR. Four
disjoint sets of sentences:

- unlabeled: audio only; self-training never reads its transcripts (the manifest's targets
  are ignored by ``qaudio self-train``);
- text: domain text with no audio (the ``--text`` of the synthesis), other sentences;
- dev: picks the best round; test: reported per round. Their transcripts are used only to
  measure.

The synthesis may use only the training voices of the corpus, so the domain's voices stay
unheard. Run (18 minutes measured with one thread on a shared 2-core AMD EPYC, the defaults
below: 80 unlabeled clips, 200 text lines, 2 rounds of 60 steps)::

    make demo   # once: the source model in runs/demo/model
    OMP_NUM_THREADS=1 python -m benchmarks.selftrain_demo --model runs/demo/model --out runs/selftrain-demo

It writes the run folder of ``qaudio self-train`` (``rounds.md``) and ``demo.md``: the test
WER of every round's model with its 95% bootstrap interval.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

NEW_NOUNS = (
    "pump",
    "valve",
    "turbine",
    "sensor",
    "boiler",
    "compressor",
    "filter",
    "motor",
    "gauge",
    "hose",
    "cable",
    "fan",
)
STATES = ("leaking", "broken", "running", "stopped", "overheating", "vibrating", "loose", "blocked")
ACTIONS = ("check", "replace", "inspect", "tighten", "open", "close", "restart", "repair")
COLOURS = ("red", "blue", "green", "yellow", "black", "white")
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
TEMPLATES = (
    lambda r: f"{r(ACTIONS)} the {r(COLOURS)} {r(NEW_NOUNS)} on line {r(NUMBERS)}",
    lambda r: f"the {r(NEW_NOUNS)} in hall {r(NUMBERS)} is {r(STATES)}",
    lambda r: f"please {r(ACTIONS)} the {r(NEW_NOUNS)} next to the {r(NEW_NOUNS)}",
    lambda r: f"{r(NUMBERS)} {r(NEW_NOUNS)}s are {r(STATES)} today",
)
DOMAIN_VOICES = ("en+m2", "en+f3")  # the corpus's held-out English voices
SYNTH_VOICES = "en,en+m1,en+m3,en+f2,en+f4,en-us+m4"  # the corpus's training voices only


def domain_sentences(n: int, seed: int) -> list[str]:
    """``n`` distinct sentences of the domain grammar."""
    rng = np.random.default_rng(seed)
    pick = lambda options: options[int(rng.integers(len(options)))]
    out: dict[str, None] = {}
    while len(out) < n:
        out[TEMPLATES[int(rng.integers(len(TEMPLATES)))](pick)] = None
    return list(out)


def make_domain(root: Path, sizes: dict[str, int], seed: int, workers: int) -> dict[str, Path]:
    from qaudio.synth.augment import Settings, augment

    sentences = domain_sentences(sum(sizes.values()), seed)
    root.mkdir(parents=True, exist_ok=True)
    paths, k = {}, 0
    for split, n in sizes.items():
        lines = sentences[k : k + n]
        k += n
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
        if split == "text":
            paths[split] = root / "text.txt"
            continue
        settings = Settings(
            "en", DOMAIN_VOICES, (150, 190), (35, 65), ("pink",), (5.0, 15.0), "spoken", False, seed + len(paths)
        )
        paths[split] = augment(
            root / f"{split}.txt", root / split, settings, split=split, workers=workers, progress=False, force=True
        )
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="runs/demo/model", help="the source model (make demo writes runs/demo/model)")
    p.add_argument("--out", default="runs/selftrain-demo")
    p.add_argument("--unlabeled", type=int, default=80, help="unlabeled domain clips")
    p.add_argument("--text", type=int, default=200, help="domain sentences without audio")
    p.add_argument("--dev", type=int, default=30)
    p.add_argument("--test", type=int, default=60)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=60)
    p.add_argument("--num-beams", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=48, help="generation cap: a domain clip holds about 8 words")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not (Path(args.model) / "config.json").is_file():
        raise SystemExit(f"{args.model} is not a saved model; run `make demo` first (it writes runs/demo/model)")

    from qaudio.selftrain import SelfTrainConfig, self_train
    from qaudio.selftrain.backend import evaluate_dev

    out = Path(args.out)
    t0 = time.time()
    data = make_domain(
        out / "domain",
        {"unlabeled": args.unlabeled, "text": args.text, "dev": args.dev, "test": args.test},
        args.seed,
        workers=1,
    )
    print(f"domain made in {time.time() - t0:.0f} s", flush=True)
    cfg = SelfTrainConfig(
        model=args.model,
        unlabeled=str(data["unlabeled"]),
        dev=str(data["dev"]),
        out=str(out / "run"),
        text=str(data["text"]),
        rounds=args.rounds,
        patience=args.rounds,
        voices=SYNTH_VOICES,
        train_steps=args.train_steps,
        threads=args.threads,
        seed=args.seed,
        save_every=max(10, args.train_steps // 4),
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
    )
    self_train(cfg)
    print(f"self-training done at {time.time() - t0:.0f} s", flush=True)
    rows = [
        "| round | model | pseudo-labels kept | synthetic clips | dev WER | test WER (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for r in range(args.rounds + 1):
        folder = out / "run" / f"round-{r}"
        if not (folder / "round.json").is_file():
            break
        rec = json.loads((folder / "round.json").read_text())
        test = evaluate_dev(rec["model"], data["test"], folder / "test", max_new_tokens=args.max_new_tokens)
        kept = f"{rec['pseudo']['kept']} of {rec['pseudo']['clips']}" if rec["pseudo"] else "-"
        synth = rec["synthetic_clips"] if r else "-"
        rows.append(
            f"| {r} | {'source' if r == 0 else f'round {r}'} | {kept} | {synth} | {rec['dev']['value']:.2f} "
            f"| {test.value:.2f} [{test.low:.2f}, {test.high:.2f}] |"
        )
    table = "\n".join(rows) + "\n"
    (out / "demo.md").write_text(table)
    print(table)
    print(f"total {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
