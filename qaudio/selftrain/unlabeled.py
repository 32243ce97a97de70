"""The unlabeled audio: a folder of recordings or a manifest, cut at pauses into clips.

Recordings longer than ``max_seconds`` are cut with :func:`qaudio.chunking.split_windows`:
each cut goes into a detected pause (Silero VAD, when installed) or the quietest frame of the
stretch before the limit, so no word is split. The pieces are written as 16 kHz WAV files;
shorter recordings are used as they are. A manifest's transcripts are never read: only its
audio paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..audio import SAMPLE_RATE, load_audio
from ..chunking import split_windows
from ..data import Example, read_manifest

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus")


def recordings(source: str | Path) -> list[Path]:
    """Audio files of a folder (recursively, sorted) or the audio paths of a JSONL manifest."""
    source = Path(source)
    if source.is_file() and source.suffix == ".jsonl":
        return [Path(ex.audio) for ex in read_manifest(source)]  # targets, if any, are ignored
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise ValueError(f"--unlabeled {source} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
        return files
    raise FileNotFoundError(f"--unlabeled {source}: expected a folder of audio files or a .jsonl manifest")


def cut_clips(source: str | Path, out_dir: str | Path, max_seconds: float, lang: str = "en") -> list[Example]:
    """One example (empty target) per clip; long recordings cut at pauses into ``out_dir``."""
    import soundfile as sf

    out_dir = Path(out_dir)
    clips: list[Example] = []
    for n, path in enumerate(recordings(source)):
        audio = load_audio(path, allow_silence=True)
        base: dict[str, Any] = {"task": "asr", "audio_lang": lang, "text_lang": lang}
        if audio.duration <= max_seconds:
            clips.append(
                Example(
                    id=f"u{n:06d}",
                    audio=str(Path(path).resolve()),
                    duration=round(audio.duration, 3),
                    meta={"recording": str(path), "offset": 0.0},
                    **base,
                )
            )
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        for k, w in enumerate(split_windows(audio.samples, max_seconds)):
            piece = out_dir / f"u{n:06d}-{k:03d}.wav"
            sf.write(piece, audio.samples[w.start : w.end], SAMPLE_RATE, subtype="PCM_16")
            clips.append(
                Example(
                    id=piece.stem,
                    audio=str(piece.resolve()),
                    duration=round(w.duration, 3),
                    meta={"recording": str(path), "offset": round(w.offset, 3)},
                    **base,
                )
            )
    return clips
