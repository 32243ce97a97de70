"""The synthetic multitask corpus: plan, render in parallel, write manifests (``qaudio synth``).

Layout of ``DIR`` (what the ``synthetic`` recipe reads):

    DIR/train.jsonl, DIR/dev.jsonl, DIR/test.jsonl   examples (qaudio.data schema), audio paths relative to DIR
    DIR/audio/<split>/<unit kind>/<id>.wav              16 kHz mono PCM-16
    DIR/corpus.json                                     size, seed, version, counts, hours, voices, scenes

Every task family of the foundation issue is covered: asr (en, de, fr), s2tt (en->de, en->fr,
de->en, fr->en), srwt (en), aac, aqa, ser, asc. Vocal sounds (vsc) are left out: see LEFT_OUT.
Speech is eSpeak NG (:mod:`qaudio.synth.espeak`); on request (``--piper``) every tenth English
train clip is spoken by the Piper neural voice instead (:mod:`qaudio.synth.piper`). That is
opt-in rather than automatic when Piper is installed, so that the same seed gives the same
corpus whatever happens to be installed, and because Piper is 20 times slower.

Reproducibility: the plan (which sentence, voice and prosody each clip gets) is drawn in the
main process; each clip is then rendered from its own generator seeded by (seed, kind, split,
index), so the bytes do not depend on the number of worker processes or their scheduling.

Leakage: sentences are drawn into disjoint pools per split (no text shared in any language),
and dev/test speak only with held-out voices; every speech example records ``voice``,
``template`` and ``sentence`` in ``meta`` so both can be checked.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Example, write_manifest
from . import captions as cap
from . import espeak, piper
from .dsp import SR, write_wav
from .grammar import Sentence, sentence_pools, spoken_form
from .parallel import default_workers, map_ordered
from .scenes import SCENES, mix_speech, render_scene
from .sounds import render_clip
from .voices import ASR_PROSODY, EMOTIONS, VOICES, voices_for

GENERATOR_VERSION = "1"  # bump when the same seed would give different bytes
SPLITS = ("train", "dev", "test")
CORPUS_FILE = "corpus.json"
LEFT_OUT = {
    "vsc": "vocal sounds (laughter, sigh, cough, throat clearing, sneeze, sniff) cannot be made "
    "convincingly with a formant synthesizer or noise bursts; a model trained on imitations would "
    "learn the imitation, so the task is left to real corpora (VocalSound)",
    "mna": "music note analysis needs instrument timbres; not synthesized here",
}


@dataclass(frozen=True)
class SplitSize:
    """Clips per split. Speech clips give one ASR example each, and some of them more tasks."""

    en: int  # English speech clips (asr)
    de: int  # German speech clips (asr, and s2tt de->en)
    fr: int  # French speech clips (asr, and s2tt fr->en)
    srwt: int  # English clips also given as word-timestamp examples
    s2tt: int  # English clips also given as en->de and as en->fr translation examples
    emotion: int  # emotional English speech clips (ser), balanced over labels
    events: int  # sound-event clips (one aac example and `questions` aqa examples each)
    scenes: int  # scene clips (asc), balanced over classes
    questions: int = 2  # aqa questions per event clip


def _sizes(train: SplitSize, test: SplitSize) -> dict[str, SplitSize]:
    return {"train": train, "dev": test, "test": test}  # dev is sized like test


_S = SplitSize
SIZES: dict[str, dict[str, SplitSize]] = {
    # for the test suite: every task in every split, a few seconds to make
    "tiny": _sizes(
        _S(en=16, de=4, fr=4, srwt=4, s2tt=4, emotion=8, events=4, scenes=7),
        _S(en=6, de=2, fr=2, srwt=3, s2tt=2, emotion=4, events=3, scenes=7),
    ),
    # `make demo`: the measured English ASR recipe of shared/OFFLINE.md (3000 train / 200
    # test clips) plus every other task. German and French have 2,400 train clips each, emotion
    # 2,000, and word times and translations ride on 2,000 and 1,200 English clips: at the demo's
    # fixed 2,000 steps each doubling of these counts (from 400, 400, 400, 500, 300 to 1,200,
    # 1,200, 1,000, 1,000, 600, then to these) cut German and French WER and raised every BLEU
    # at about the same share of draws (benchmarks/RESULTS.md, "More distinct examples").
    "small": _sizes(
        _S(en=3000, de=2400, fr=2400, srwt=2000, s2tt=1200, emotion=2000, events=500, scenes=420),
        _S(en=200, de=50, fr=50, srwt=100, s2tt=50, emotion=100, events=100, scenes=105),
    ),
    "medium": _sizes(
        _S(en=12000, de=1600, fr=1600, srwt=2000, s2tt=1200, emotion=1600, events=2000, scenes=1680),
        _S(en=400, de=100, fr=100, srwt=200, s2tt=100, emotion=200, events=200, scenes=210),
    ),
    "large": _sizes(
        _S(en=48000, de=6400, fr=6400, srwt=8000, s2tt=4800, emotion=6400, events=8000, scenes=6720),
        _S(en=1000, de=250, fr=250, srwt=500, s2tt=250, emotion=500, events=500, scenes=490),
    ),
}
_KIND_CODE = {"en": 1, "de": 2, "fr": 3, "emotion": 4, "events": 5, "scene": 6}
_SPLIT_CODE = {s: i for i, s in enumerate(SPLITS)}


@dataclass(frozen=True)
class Unit:
    """One clip to render, with everything the plan decided for it."""

    kind: str  # en | de | fr | emotion | events | scene
    split: str
    index: int
    seed: int
    params: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.split}-{self.kind}-{self.index:05d}"

    @property
    def audio(self) -> str:
        return f"audio/{self.split}/{self.kind}/{self.name}.wav"

    def rng(self, stream: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, _KIND_CODE[self.kind], _SPLIT_CODE[self.split], self.index, stream])


# ---- Planning (main process) ----------------------------------------------------------------


def _speaker(
    rng: np.random.Generator, pool: list[Sentence], split: str, langs: tuple[str, ...] = ("en", "de", "fr")
) -> dict:
    """A random talker for babble or an overlay: any sentence of the split, a voice of the split."""
    lang = str(rng.choice(langs))
    s = pool[int(rng.integers(len(pool)))]
    return {"text": s.written[lang], "voice": str(rng.choice(voices_for(lang, split))), "sentence": s.id, "lang": lang}


PIPER_EVERY = 10  # with --piper, every 10th English train clip is spoken by Piper instead


def plan(size: str, seed: int, piper_voice: bool = False) -> list[Unit]:
    """Every clip of the corpus, in manifest order."""
    if size not in SIZES:
        raise ValueError(f"unknown corpus size {size!r}; valid sizes: {', '.join(SIZES)}")
    sizes = SIZES[size]
    # test and dev first: their sentences then do not depend on the size of train
    need = {s: sizes[s].en + sizes[s].de + sizes[s].fr + sizes[s].emotion for s in ("test", "dev", "train")}
    pools = sentence_pools(seed, need)
    units: list[Unit] = []
    for split in SPLITS:
        sz, pool = sizes[split], pools[split]
        take = iter(pool)
        for lang in ("en", "de", "fr"):
            voices = voices_for(lang, split)
            n = getattr(sz, lang)
            for i in range(n):
                u = Unit(lang, split, i, seed)
                voice = voices[i % len(voices)]
                if piper_voice and lang == "en" and split == "train" and i % PIPER_EVERY == PIPER_EVERY - 1:
                    voice = piper.VOICE  # one voice only, so never in dev/test
                tasks = ["asr"]
                if lang == "en" and i < sz.srwt and voice != piper.VOICE:  # Piper gives no word timings
                    tasks.append("srwt")
                if lang == "en" and i >= n - sz.s2tt:  # translation from the other end of the list
                    tasks += ["s2tt:de", "s2tt:fr"]
                if lang != "en":
                    tasks.append("s2tt:en")
                s = next(take)
                params = {"sentence": s.id, "text": s.written, "voice": voice, "tasks": tasks}
                units.append(Unit(lang, split, i, seed, {**params, **ASR_PROSODY.draw(u.rng(1))}))
        labels = list(EMOTIONS)
        for i in range(sz.emotion):
            u = Unit("emotion", split, i, seed)
            label = labels[i % len(labels)]
            s = next(take)
            voices = voices_for("en", split)
            params = {
                "sentence": s.id,
                "text": s.written,
                "voice": voices[(i // len(labels)) % len(voices)],
                "label": label,
            }
            units.append(Unit("emotion", split, i, seed, {**params, **EMOTIONS[label].draw(u.rng(1))}))
        for i in range(sz.events):
            units.append(Unit("events", split, i, seed, {"questions": sz.questions}))
        classes = list(SCENES)
        for i in range(sz.scenes):
            u = Unit("scene", split, i, seed)
            rng = u.rng(1)
            label = classes[i % len(classes)]
            talkers = [_speaker(rng, pool, split) for _ in range(SCENES[label].talkers)]
            overlay = (
                {**_speaker(rng, pool, split, ("en",)), "snr_db": round(float(rng.uniform(3, 12)), 1)}
                if rng.random() < 0.5
                else None
            )
            units.append(Unit("scene", split, i, seed, {"label": label, "talkers": talkers, "overlay": overlay}))
    return units


# ---- Rendering (worker processes) -----------------------------------------------------------

_PROSODY_KEYS = ("rate", "pitch", "pitch_range", "volume")


def _speak(params: dict, lang: str) -> espeak.SpeechClip:
    text = params["text"][lang]
    if params["voice"] == piper.VOICE:  # the drawn rate sets Piper's speed; no word timings
        return espeak.trim(espeak.SpeechClip(piper.synthesize(text, length_scale=175 / params["rate"]), []))
    return espeak.synthesize(text, params["voice"], **{k: params[k] for k in _PROSODY_KEYS})


def _speech_meta(u: Unit) -> dict:
    p = u.params
    return {
        "voice": p["voice"],
        "template": p["sentence"].split(":")[0],
        "sentence": p["sentence"],
        "prosody": {k: p[k] for k in _PROSODY_KEYS},
    }


def _render_speech(u: Unit) -> tuple[np.ndarray, list[Example]]:
    lang, p = u.kind, u.params
    clip = _speak(p, lang)
    transcript = spoken_form(p["text"][lang])
    if p["voice"] != piper.VOICE and [w.lower() for w, _, _ in clip.words] != transcript.split():
        raise RuntimeError(f"eSpeak word events do not match the words of {p['text'][lang]!r}: {clip.words}")
    dur = round(clip.duration, 3)
    meta = _speech_meta(u)
    out = []
    for task in p["tasks"]:
        name, _, target_lang = task.partition(":")
        common: dict[str, Any] = {
            "id": f"{u.name}-{task.replace(':', '-')}",
            "audio": u.audio,
            "duration": dur,
            "task": name,
            "audio_lang": lang,
            "meta": meta,
        }
        if name == "asr":
            out.append(Example(**common, text_lang=lang, target=transcript))
        elif name == "srwt":
            if problems := espeak.word_problems(clip.samples, clip.words):
                raise RuntimeError(f"bad word timings for {p['text'][lang]!r} ({p['voice']}): {'; '.join(problems)}")
            words = [[w.lower(), s, e] for w, s, e in clip.words]
            out.append(Example(**common, text_lang=lang, target=transcript, words=words))
        else:  # s2tt: the exact translation, as written
            out.append(Example(**common, text_lang=target_lang, target=p["text"][target_lang]))
    return clip.samples, out


def _render_emotion(u: Unit) -> tuple[np.ndarray, list[Example]]:
    p = u.params
    clip = _speak(p, "en")
    meta = {**_speech_meta(u), "emotion": p["label"]}
    ex = Example(
        id=f"{u.name}-ser",
        audio=u.audio,
        duration=round(clip.duration, 3),
        task="ser",
        audio_lang="en",
        text_lang="en",
        target=p["label"],
        label=p["label"],
        meta=meta,
    )
    return clip.samples, [ex]


def _render_events(u: Unit) -> tuple[np.ndarray, list[Example]]:
    rng = u.rng()
    samples, segments = render_clip(rng)
    dur = round(len(samples) / SR, 3)
    meta = {"segments": [s.to_dict() for s in segments]}
    common: dict[str, Any] = {"audio": u.audio, "duration": dur, "audio_lang": "unknown", "text_lang": "en"}
    out = [Example(id=f"{u.name}-aac", task="aac", target=cap.captions(segments, rng), meta=meta, **common)]
    for k, (q, a, qtype) in enumerate(cap.questions(segments, rng, u.params["questions"])):
        out.append(
            Example(
                id=f"{u.name}-aqa{k}", task="aqa", question=q, target=a, meta={**meta, "question_type": qtype}, **common
            )
        )
    return samples, out


def _render_scene(u: Unit) -> tuple[np.ndarray, list[Example]]:
    p, rng = u.params, u.rng()
    babble = [espeak.synthesize(t["text"], t["voice"]).samples for t in p["talkers"]]
    x = render_scene(p["label"], rng, babble)
    meta = {"scene": p["label"], "talkers": [t["voice"] for t in p["talkers"]], "speech": None}
    if p["overlay"]:
        o = p["overlay"]
        speech = espeak.synthesize(o["text"], o["voice"]).samples[: len(x)]
        x = mix_speech(x, speech, o["snr_db"], int(rng.integers(0, len(x) - len(speech) + 1)))
        meta["speech"] = {"voice": o["voice"], "sentence": o["sentence"], "snr_db": o["snr_db"]}
    ex = Example(
        id=f"{u.name}-asc",
        audio=u.audio,
        duration=round(len(x) / SR, 3),
        task="asc",
        audio_lang="unknown",
        text_lang="en",
        target=p["label"],
        label=p["label"],
        meta=meta,
    )
    return x, [ex]


_RENDER = {
    "en": _render_speech,
    "de": _render_speech,
    "fr": _render_speech,
    "emotion": _render_emotion,
    "events": _render_events,
    "scene": _render_scene,
}


def _render(job: tuple[Unit, str]) -> tuple[list[Example], float]:
    unit, out_dir = job
    samples, examples = _RENDER[unit.kind](unit)
    path = Path(out_dir) / unit.audio
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, samples)
    return examples, len(samples) / SR


# ---- The whole corpus -----------------------------------------------------------------------


def _existing(out: Path, size: str, seed: int, piper_voice: bool) -> dict | None:
    """The corpus description when ``out`` already holds this exact corpus, complete."""
    try:
        info = json.loads((out / CORPUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    # The clip counts, voices and emotions too: a release that changed them names another corpus.
    wanted = (GENERATOR_VERSION, size, _counts(size), seed, piper_voice, _voices(), _emotions())
    keys = ("version", "size", "counts", "seed", "piper", "voices", "emotions")
    same = tuple(info.get(k) for k in keys) == wanted
    return info if same and all((out / f"{s}.jsonl").is_file() for s in SPLITS) else None


def _voices() -> dict[str, dict[str, list[str]]]:
    """The voices per language and split, as corpus.json records them."""
    return {lang: {k: list(v) for k, v in d.items()} for lang, d in VOICES.items()}


def _emotions() -> dict[str, dict[str, list[int]]]:
    """The prosody per emotion, as corpus.json records it (JSON turns its tuples into lists)."""
    return {label: {k: list(v) for k, v in asdict(p).items()} for label, p in EMOTIONS.items()}


def _counts(size: str) -> dict[str, dict[str, int]]:
    """The clip counts of ``size`` per split, as corpus.json records them."""
    return {split: asdict(n) for split, n in SIZES[size].items()}


def _prepare(out: Path) -> None:
    """Empty a previous corpus in ``out``; refuse to touch a folder that holds something else."""
    if out.exists() and any(out.iterdir()):
        if not (out / CORPUS_FILE).is_file():
            raise ValueError(
                f"{out} is not empty and holds no {CORPUS_FILE}: it is not a qaudio synthetic corpus; "
                "choose an empty or new --out folder"
            )
        (out / CORPUS_FILE).unlink()  # first, so an interrupted rewrite is never taken as complete
        shutil.rmtree(out / "audio", ignore_errors=True)
        for s in SPLITS:
            (out / f"{s}.jsonl").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def generate(
    out_dir: str | os.PathLike,
    size: str = "small",
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
    piper_voice: bool = False,
) -> dict:
    """Make the corpus in ``out_dir`` and return its description (what corpus.json holds).

    A folder that already holds the same corpus (size and its clip counts, seed, Piper or not,
    generator version) is kept as it is unless ``force``. ``piper_voice`` speaks every tenth
    English train clip with the Piper neural voice (must be installed; 20 times slower than
    eSpeak). Also returns, outside corpus.json, ``seconds`` (wall time) and ``realtime`` (audio
    seconds per wall second) under the key ``timing``.
    """
    if not espeak.available():
        raise espeak.EspeakUnavailable(f"the synthetic corpus needs eSpeak NG: {espeak.INSTALL_HINT}")
    if piper_voice and not piper.available():
        raise espeak.EspeakUnavailable(f"--piper needs the Piper voice: {piper.INSTALL_HINT}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(out_dir)
    if not force and (info := _existing(out, size, seed, piper_voice)) is not None:
        return {**info, "timing": None}
    units = plan(size, seed, piper_voice)
    _prepare(out)
    workers = workers or default_workers()
    start = time.perf_counter()
    results = map_ordered(_render, [(u, str(out)) for u in units], workers, progress)
    wall = time.perf_counter() - start

    by_split: dict[str, list[Example]] = {s: [] for s in SPLITS}
    seconds = dict.fromkeys(SPLITS, 0.0)
    clips = dict.fromkeys(SPLITS, 0)
    for unit, (examples, dur) in zip(units, results, strict=True):
        by_split[unit.split].extend(examples)
        seconds[unit.split] += dur
        clips[unit.split] += 1
    for split, examples in by_split.items():
        write_manifest(examples, out / f"{split}.jsonl")
    info = describe(size, seed, piper_voice, by_split, seconds, clips)
    (out / CORPUS_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    total = sum(seconds.values())
    return {**info, "timing": {"seconds": round(wall, 2), "workers": workers, "realtime": round(total / wall, 1)}}


def describe(
    size: str,
    seed: int,
    piper_voice: bool,
    by_split: dict[str, list[Example]],
    seconds: dict[str, float],
    clips: dict[str, int],
) -> dict:
    """The corpus description written to corpus.json (deterministic: no times, no paths)."""
    splits = {}
    for split, examples in by_split.items():
        counts: dict[str, int] = {}
        for ex in examples:
            key = ex.task if ex.task != "s2tt" else f"s2tt:{ex.audio_lang}-{ex.text_lang}"
            counts[key] = counts.get(key, 0) + 1
        splits[split] = {
            "examples": dict(sorted(counts.items())),
            "clips": clips[split],
            "hours": round(seconds[split] / 3600, 3),
        }
    return {
        "name": "qaudio-synthetic",
        "generator": "qaudio.synth",
        "version": GENERATOR_VERSION,
        "size": size,
        "counts": _counts(size),
        "seed": seed,
        "piper": piper_voice,
        "sample_rate": SR,
        "splits": splits,
        "hours": round(sum(seconds.values()) / 3600, 3),
        "voices": _voices(),
        "emotions": _emotions(),
        "scenes": {label: s.description for label, s in SCENES.items()},
        "left_out": LEFT_OUT,
    }
