"""``qaudio tts-augment``: domain sentences -> ASR training examples with word timestamps.

The Twister idea (text-only domain adaptation of speech recognition by synthesizing the
domain's sentences, cf. Zheng et al., "Using Synthetic Audio to Improve the Recognition of
Out-of-Vocabulary Words in End-to-End ASR Systems", ICASSP 2021) made practical offline:
every line of a text file is spoken by eSpeak NG with a varied voice, speaking rate and pitch,
over a varied background (coloured noise or a scene texture of :mod:`qaudio.synth.scenes`) at
a varied signal-to-noise ratio. The output is a manifest in the qaudio example schema, ready
to be mixed into training with the user's real data:

    qaudio tts-augment --text domain.txt --out data/domain_tts --copies 3 --noise none,pink,street
    DIR/train.jsonl   asr examples (with words [[w, start, end], ...]); with --srwt also srwt ones
    DIR/audio/*.wav   16 kHz mono
    DIR/augment.json  the settings, for the record

Targets: ``--target written`` (default) keeps each line as written and asks for the
inverse-text-normalized output (``<|itn|>``: digits, casing, punctuation as in the text);
``--target spoken`` lower-cases and strips punctuation, the corpus's ``<|wo_itn|>`` form.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Example, write_manifest
from ..tags import LANGUAGES
from . import dsp, espeak, piper
from .dsp import SR
from .grammar import sentence_pools, spoken_form
from .parallel import default_workers, map_ordered
from .scenes import SCENES, mix_speech, render_scene
from .voices import VOICES

COLORED_NOISE = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # spectral exponent
NOISES = ("none", *COLORED_NOISE, *SCENES)
MAX_SECONDS = 30.0  # the Whisper encoder's window


@dataclass(frozen=True)
class Settings:
    lang: str
    voices: tuple[str, ...]
    rate: tuple[int, int]  # words per minute, drawn per clip
    pitch: tuple[int, int]  # 0-99, drawn per clip
    noises: tuple[str, ...]
    snr_db: tuple[float, float]
    target: str  # written | spoken
    srwt: bool
    seed: int


def read_sentences(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file; lines starting with '#' are comments."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {path} does not exist (expected UTF-8 text, one sentence per line)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    sentences = [" ".join(line.split()) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not sentences:
        raise ValueError(f"{path} holds no sentences (expected one sentence per line; '#' starts a comment)")
    return sentences


def _background(kind: str, rng: np.random.Generator, n: int) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind in COLORED_NOISE:
        return dsp.colored(rng, n, COLORED_NOISE[kind]).astype(np.float32)
    talkers = []
    if SCENES[kind].talkers:  # babble from the corpus grammar, never from the user's lines
        pool = sentence_pools(int(rng.integers(2**31)), {"babble": SCENES[kind].talkers})["babble"]
        for s in pool:
            voice_lang = str(rng.choice(list(VOICES)))
            talkers.append(
                espeak.synthesize(s.written[voice_lang], str(rng.choice(VOICES[voice_lang]["train"]))).samples
            )
    return render_scene(kind, rng, talkers, duration_s=n / SR)


def _render(job: tuple[int, int, str, Settings, str]) -> list[Example]:
    line, copy, text, st, out = job
    rng = np.random.default_rng([st.seed, line, copy])
    voice = st.voices[int(rng.integers(len(st.voices)))]
    rate, pitch = int(rng.integers(st.rate[0], st.rate[1] + 1)), int(rng.integers(st.pitch[0], st.pitch[1] + 1))
    if voice == piper.VOICE:  # the drawn rate sets Piper's speed; Piper gives no word timings
        clip = espeak.trim(espeak.SpeechClip(piper.synthesize(text, length_scale=175 / rate), []))
    else:
        clip = espeak.synthesize(text, voice, rate=rate, pitch=pitch)
    if clip.duration > MAX_SECONDS:
        raise ValueError(
            f"line {line + 1} speaks for {clip.duration:.1f} s, more than the {MAX_SECONDS:.0f} s a clip may last; "
            "split it into shorter sentences"
        )
    noise = st.noises[int(rng.integers(len(st.noises)))]
    snr = round(float(rng.uniform(*st.snr_db)), 1)
    samples = clip.samples
    background = _background(noise, rng, len(samples))
    if background is not None:
        samples = mix_speech(background, samples, snr, 0)
    name = f"tts-{line:05d}-{copy}"
    audio = f"audio/{name}.wav"
    (Path(out) / "audio").mkdir(parents=True, exist_ok=True)
    dsp.write_wav(Path(out) / audio, samples)

    written = st.target == "written"
    spoken_words = [[w.lower(), s, e] for w, s, e in clip.words] or None
    meta = {
        "voice": voice,
        "rate": rate,
        "pitch": pitch if voice != piper.VOICE else None,  # Piper takes no pitch
        "noise": noise,
        "snr_db": snr if noise != "none" else None,
        "line": line + 1,
        "source": "tts-augment",
    }
    common: dict[str, Any] = {
        "audio": audio,
        "duration": round(len(samples) / SR, 3),
        "audio_lang": st.lang,
        "text_lang": st.lang,
    }
    if written:  # the target keeps digits, casing and punctuation: the <|itn|> output
        asr = Example(
            id=f"{name}-asr",
            task="asr",
            target=text,
            words=[[w, s, e] for w, s, e in clip.words] or None,
            meta={**meta, "instruction": "itn"},
            **common,
        )
    else:
        asr = Example(id=f"{name}-asr", task="asr", target=spoken_form(text), words=spoken_words, meta=meta, **common)
    out_examples = [asr]
    if st.srwt and spoken_words:  # word timestamps have one output form: spoken words with their times
        out_examples.append(
            Example(id=f"{name}-srwt", task="srwt", target=spoken_form(text), words=spoken_words, meta=meta, **common)
        )
    return out_examples


def augment(
    text_file: str | Path,
    out_dir: str | Path,
    settings: Settings,
    copies: int = 1,
    split: str = "train",
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Synthesize ``copies`` versions of every sentence; returns the manifest path."""
    sentences = read_sentences(text_file)
    out = Path(out_dir)
    manifest = out / f"{split}.jsonl"
    if manifest.exists() and not force:
        raise ValueError(f"{manifest} exists; pass --force to overwrite it or choose another --out")
    if not espeak.available():
        raise ValueError(f"tts-augment needs eSpeak NG: {espeak.INSTALL_HINT}")
    for voice in settings.voices:  # fail on a bad voice before any work
        if voice == piper.VOICE and not piper.available():
            raise ValueError(f"voice {piper.VOICE} needs the Piper voice: {piper.INSTALL_HINT}")
        if voice != piper.VOICE:
            espeak.synthesize("a", voice)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(i, c, s, settings, str(out)) for i, s in enumerate(sentences) for c in range(copies)]
    results = map_ordered(_render, jobs, workers or default_workers(), progress, desc="tts-augment")
    write_manifest([ex for exs in results for ex in exs], manifest)
    record = {
        **settings.__dict__,
        "text": str(text_file),
        "sentences": len(sentences),
        "copies": copies,
        "split": split,
    }
    (out / "augment.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _csv(value: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", required=True, help="UTF-8 text file, one sentence per line ('#' starts a comment)")
    parser.add_argument("--out", required=True, help="output folder: <split>.jsonl, audio/, augment.json")
    parser.add_argument("--lang", default="en", help="language of the sentences (default: en)")
    parser.add_argument(
        "--voices",
        type=_csv,
        default=None,
        help="comma-separated voices: eSpeak NG ones such as en,en+f3,en-us+m4, and piper:joe (English, when "
        "installed) (default: every eSpeak voice qaudio uses for --lang)",
    )
    parser.add_argument(
        "--copies",
        type=int,
        default=1,
        help="versions of each sentence, each with its own voice, speed and noise (default: 1)",
    )
    parser.add_argument(
        "--rate",
        type=int,
        nargs=2,
        default=(140, 200),
        metavar=("MIN", "MAX"),
        help="speaking rate range, words per minute (default: 140 200)",
    )
    parser.add_argument(
        "--pitch",
        type=int,
        nargs=2,
        default=(35, 65),
        metavar=("MIN", "MAX"),
        help="pitch range, 0-99 (default: 35 65)",
    )
    parser.add_argument(
        "--noise",
        type=_csv,
        default=("none",),
        help=f"comma-separated backgrounds drawn per clip, from: {', '.join(NOISES)} (default: none)",
    )
    parser.add_argument(
        "--snr",
        type=float,
        nargs=2,
        default=(5.0, 20.0),
        metavar=("MIN", "MAX"),
        help="speech-to-background ratio range in dB (default: 5 20)",
    )
    parser.add_argument(
        "--target",
        default="written",
        choices=("written", "spoken"),
        help="written: the line as is, <|itn|>; spoken: lower case without punctuation, <|wo_itn|> (default: written)",
    )
    parser.add_argument("--srwt", action="store_true", help="also write word-timestamp (srwt) examples")
    parser.add_argument("--split", default="train", help="manifest name, <split>.jsonl (default: train)")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives the same bytes (default: 0)"
    )
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: every available core)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def settings_from_args(args: argparse.Namespace) -> Settings:
    if args.lang not in LANGUAGES:
        raise ValueError(f"--lang {args.lang!r} is not a qaudio language; expected one of {', '.join(LANGUAGES)}")
    voices = args.voices or (
        VOICES[args.lang]["train"] + VOICES[args.lang]["heldout"] if args.lang in VOICES else (args.lang,)
    )
    unknown = [n for n in args.noise if n not in NOISES]
    if unknown:
        raise ValueError(f"unknown --noise {', '.join(unknown)}; expected some of {', '.join(NOISES)}")
    for name, (lo, hi), bounds in (("--rate", args.rate, (80, 450)), ("--pitch", args.pitch, (0, 99))):
        if not bounds[0] <= lo <= hi <= bounds[1]:
            raise ValueError(f"{name} {lo} {hi} must satisfy {bounds[0]} <= MIN <= MAX <= {bounds[1]}")
    if args.snr[0] > args.snr[1]:
        raise ValueError(f"--snr MIN must not exceed MAX, got {args.snr[0]} {args.snr[1]}")
    if args.copies < 1:
        raise ValueError(f"--copies must be at least 1, got {args.copies}")
    return Settings(
        args.lang,
        tuple(voices),
        tuple(args.rate),
        tuple(args.pitch),
        tuple(args.noise),
        tuple(args.snr),
        args.target,
        args.srwt,
        args.seed,
    )


def main(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    manifest = augment(args.text, args.out, settings, args.copies, args.split, args.workers, not args.quiet, args.force)
    n = sum(1 for _ in open(manifest, encoding="utf-8"))
    print(f"wrote {n} examples to {manifest}")
    return 0
