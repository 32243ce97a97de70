"""Any Hugging Face dataset, by hub id or local path, with a column mapping.

``--root`` is one of:

* a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (read with
  ``datasets.load_from_disk``; a DatasetDict's ``--split`` picks the split);
* a ``.parquet`` (or ``.jsonl``/``.csv``) file, whose rows form the split given;
* a folder of data files in the hub layout (``<split>-*.parquet``, ``data/<split>-*``);
* a hub id (``openslr/librispeech_asr``), with ``--option config=...``; this needs network.

The audio column is read with ``Audio(decode=False)``: datasets' own decoding needs
torchcodec, which is not always installable. Each row's audio is then either a file path,
used as it is (relative paths are relative to the dataset folder), or embedded bytes. Bytes
are decoded once by :func:`qaudio.audio.load_audio` and written to a cache folder as 16 kHz
mono 16-bit wav named by the SHA-1 of the bytes (``$QAUDIO_CACHE/hf_audio/``, default
``~/.cache/qaudio/hf_audio/``, or ``--option cache_dir=``). Why files rather than bytes in the
manifest: manifests stay small, readable JSONL; every reader of an example (training,
evaluation, ``qaudio data``) sees a plain path; durations are exact; a second run reuses the
files. ``qaudio data hf ... --shards OUT`` does not decode at all: embedded bytes go into the
shards as they are (FLAC stays FLAC), with the duration read from their header, and no wav
cache is written (:meth:`HuggingFace.audio_records`).

Columns: ``audio_column`` (default ``audio``), ``target_column`` (default ``text`` when the
dataset has one; a list of strings becomes a list of references, as captions), ``label_column``
(a ClassLabel's ids become its names), ``question_column`` and ``id_column``. ``--task``
defaults to asr.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qaudio.audio import AudioError
from qaudio.cache import cache_dir as qaudio_cache_dir
from qaudio.data import Example
from qaudio.recipe import Recipe, Skipped, audio_duration, tag_language
from qaudio.tags import INSTRUCTIONS, LANGUAGES, UNKNOWN_LANGUAGE

DEFAULT_TASK = "asr"
DEFAULT_TARGET_COLUMN = "text"
# Local data files the packaged datasets builders read, by suffix.
FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".arrow": "arrow"}


def cached_wav(data: bytes, cache_dir: Path) -> tuple[Path, float]:
    """Decode audio bytes to 16 kHz mono wav in ``cache_dir`` once; returns (path, seconds)."""
    import numpy as np
    import soundfile as sf

    from qaudio.audio import SAMPLE_RATE, load_audio

    digest = hashlib.sha1(data).hexdigest()
    path = cache_dir / digest[:2] / f"{digest}.wav"
    if path.is_file():
        return path, audio_duration(path)
    samples = load_audio(data, allow_silence=True).samples  # (T,) float32 at 16 kHz
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # atomic: parallel runs may race
    # Resampling can overshoot [-1, 1] by a hair; clip rather than let 16-bit PCM wrap around.
    sf.write(partial, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(partial, path)
    return path, len(samples) / SAMPLE_RATE


def embedded_audio(value: dict, row_no: int, skipped: Skipped) -> tuple[bytes, str, float] | None:
    """(bytes as stored, their file extension, seconds) of embedded audio, read from the header
    only; None (counted) when soundfile cannot read it."""
    import io

    import soundfile as sf

    data = value["bytes"]
    try:
        info = sf.info(io.BytesIO(data))
    except (RuntimeError, sf.LibsndfileError) as e:
        skipped.add("embedded audio cannot be decoded", f"row {row_no}: {e}")
        return None
    if info.duration <= 0:
        skipped.add("embedded audio is empty", f"row {row_no}")
        return None
    return data, info.format.lower(), float(info.duration)


@dataclass(frozen=True)
class HuggingFace(Recipe):
    config: str | None = None  # hub configuration name (load_dataset's second argument)
    audio_column: str = "audio"  # the column holding the audio (Audio feature, or file paths)
    target_column: str | None = None  # reference text or list of captions; default "text" if present
    label_column: str | None = None  # class label, for classification tasks
    question_column: str | None = None  # the question, for aqa
    id_column: str | None = None  # a unique id per row; default the row number
    audio_lang: str = "en"  # language of the speech ("unknown" for non-speech audio)
    text_lang: str | None = None  # language of the target text; default audio_lang (en for non-speech)
    instruction: str | None = None  # another output instruction of the task (e.g. caption_audiocaps)
    streaming: bool = True  # hub ids: stream rows instead of downloading the split first
    cache_dir: str | None = None  # where embedded audio is written as 16 kHz wav; default $QAUDIO_CACHE/hf_audio

    name = "hf"
    tasks = ()  # any; --task defaults to asr
    splits = ()  # whatever the dataset has
    homepage = "https://huggingface.co/datasets"
    layout = (
        "ROOT = a save_to_disk folder, a .parquet/.jsonl/.csv file, a folder of <split>-*.parquet files, or a hub id;\n"
        "columns named by --option audio_column= (default audio), target_column= (default text),\n"
        "label_column=, question_column=, id_column="
    )

    def check_root(self, root: Path) -> None:
        pass  # a root that is not on disk is a hub id, checked when it is loaded

    def _open(self, root: Path, split: str):
        """(rows, folder relative audio paths are resolved against, class-label names by column)."""
        from datasets import Audio, ClassLabel, DatasetDict, load_dataset, load_from_disk

        if root.is_dir() and ((root / "dataset_dict.json").is_file() or (root / "state.json").is_file()):
            ds = load_from_disk(str(root))
            if isinstance(ds, DatasetDict):
                if split not in ds:
                    raise ValueError(f"hf: {root} has no split {split!r}; its splits: {', '.join(ds)}")
                ds = ds[split]
            base = root
        elif root.is_file():
            if root.suffix not in FILE_BUILDERS:
                raise ValueError(f"hf: cannot read {root}; expected a file ending in {', '.join(FILE_BUILDERS)}")
            ds = load_dataset(FILE_BUILDERS[root.suffix], data_files={split: str(root)}, split=split, streaming=True)
            base = root.parent
        else:
            local = root.exists()
            try:
                # Streaming reads local files in place instead of copying them into the datasets cache.
                ds = load_dataset(str(root), self.config, split=split, streaming=True if local else self.streaming)
            except Exception as e:  # hub errors come in many types; say what was tried
                where = f"the data files in {root}" if local else f"hub dataset {str(root)!r} (needs network)"
                raise ValueError(f"hf: cannot load split {split!r} of {where}: {type(e).__name__}: {e}") from None
            base = root if local else None
        features = ds.features or {}
        if self.audio_column not in features and features:
            raise ValueError(
                f"hf: no audio column {self.audio_column!r}; columns: {', '.join(features)} (set --option audio_column=)"
            )
        if isinstance(features.get(self.audio_column), Audio):
            ds = ds.cast_column(self.audio_column, Audio(decode=False))
        class_names = {k: f.names for k, f in features.items() if isinstance(f, ClassLabel)}
        return ds, base, class_names

    def _columns(self, row: dict) -> dict[str, str | None]:
        """The role -> column map, checked against the first row's columns."""
        target = self.target_column or (DEFAULT_TARGET_COLUMN if DEFAULT_TARGET_COLUMN in row else None)
        roles = {
            "audio": self.audio_column,
            "target": target,
            "label": self.label_column,
            "question": self.question_column,
            "id": self.id_column,
        }
        missing = [f"{role}_column={col!r}" for role, col in roles.items() if col and col not in row]
        if missing:
            raise ValueError(f"hf: the dataset has no column for {', '.join(missing)}; its columns: {', '.join(row)}")
        if not target and not self.label_column:
            raise ValueError(f"hf: no target: set --option target_column= or label_column= (columns: {', '.join(row)})")
        return roles

    def _audio(
        self, value, base: Path | None, cache_dir: Path, row_no: int, skipped: Skipped
    ) -> tuple[Path, float] | None:
        """(wav path, seconds) of a row's audio value, or None when skipped (missing, undecodable)."""
        if isinstance(value, dict) and value.get("bytes"):
            try:
                return cached_wav(value["bytes"], cache_dir)
            except AudioError as e:
                skipped.add("embedded audio cannot be decoded", f"row {row_no}: {e}")
                return None
        path = value.get("path") if isinstance(value, dict) else value
        if not isinstance(path, str) or not path:
            raise ValueError(
                f"hf: row {row_no}: audio column {self.audio_column!r} holds neither bytes nor a path: {str(value)[:80]}"
            )
        file = Path(path).expanduser()
        if not file.is_absolute() and base is not None:
            file = base / file
        seconds = skipped.duration(file)
        return None if seconds is None else (file.absolute(), seconds)

    def examples(self, root: Path, split: str, task: str | None = None) -> Iterator[Example]:
        for record in self._records(root, split, task, embed=False):
            yield record.example

    def audio_records(self, root: Path, split: str, task: str | None = None) -> Iterator:
        """Rows with embedded audio keep their encoded bytes (no decoding, no wav cache); rows
        naming files are read by the shard writer."""
        return self._records(root, split, task, embed=True)

    def _records(self, root: Path, split: str, task: str | None, embed: bool) -> Iterator:
        from qaudio.shards import AudioRecord

        task = task or DEFAULT_TASK
        if split is None:
            raise ValueError("hf: name the split to read (--split), e.g. train or test")
        audio_lang = (
            self.audio_lang if self.audio_lang == UNKNOWN_LANGUAGE else tag_language(self.audio_lang, self.name)
        )
        text_lang = tag_language(self.text_lang or (audio_lang if audio_lang in LANGUAGES else "en"), self.name)
        if self.instruction and self.instruction not in INSTRUCTIONS:
            raise ValueError(f"hf: unknown instruction {self.instruction!r}; valid: {', '.join(INSTRUCTIONS)}")
        ds, base, class_names = self._open(root, split)
        cache_dir = Path(self.cache_dir).expanduser() if self.cache_dir else qaudio_cache_dir("hf_audio")
        dataset = root.name if root.exists() else str(root)
        roles = None
        skipped = Skipped(self, split)
        for row_no, row in enumerate(ds):
            roles = roles or self._columns(row)
            value = row[self.audio_column]
            data = extension = None
            if embed and isinstance(value, dict) and value.get("bytes"):
                found = embedded_audio(value, row_no, skipped)
                if found is None:
                    continue
                data, extension, duration = found
                audio = value.get("path") or f"row-{row_no}.{extension}"
            else:
                found = self._audio(value, base, cache_dir, row_no, skipped)
                if found is None:
                    continue
                audio, duration = found
            target = row[roles["target"]] if roles["target"] else ""
            label = row[roles["label"]] if roles["label"] else None
            if label is not None and roles["label"] in class_names:
                label = class_names[roles["label"]][int(label)]
            key = str(row[roles["id"]]) if roles["id"] else str(row_no)
            meta = {"corpus": f"hf:{dataset}", "split": split}
            if self.instruction:
                meta["instruction"] = self.instruction
            yield AudioRecord(
                Example(
                    id=self.example_id(split, f"{dataset}/{key}"),
                    audio=str(audio),
                    duration=duration,
                    task=task,
                    audio_lang=audio_lang,
                    text_lang=text_lang,
                    target=[str(t).strip() for t in target] if isinstance(target, list) else str(target or "").strip(),
                    question=str(row[roles["question"]]).strip() if roles["question"] else None,
                    label=None if label is None else str(label),
                    meta=meta,
                ),
                data,
                extension or "",
            )
        skipped.warn()


RECIPE = HuggingFace()
