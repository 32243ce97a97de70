"""Shard sets: a corpus as sequential WebDataset tar files plus an index, for streamed training.

Format: WebDataset (https://github.com/webdataset/webdataset, "The WebDataset Format"). A shard
is a POSIX tar file; one example is the consecutive members sharing a key:

    000000042.flac    the audio, encoded (FLAC by default; WAV, or a parquet row's own bytes)
    000000042.json    the example record (qaudio.data schema), its ``audio`` field the member name

Why WebDataset and not Lhotse Shar: a WebDataset shard is a plain tar, so ``tar tf``, Python's
``tarfile``, the ``webdataset`` library, Hugging Face ``datasets`` ("webdataset" builder) and
torchdata all read it, and it streams from any URL ``webdataset.gopen`` opens (local paths,
``http(s)://`` through curl, ``pipe:COMMAND`` for ``aws s3 cp``/``gsutil cat``). Lhotse Shar
splits one corpus over parallel tar files per field (``cuts``, ``recording``) tied to Lhotse's
Cut objects; qaudio's record is its own :class:`~qaudio.data.Example`, and one tar per shard
keeps shard-and-offset resume simple (:mod:`qaudio.training.streaming`).

``index.json`` beside the shards says what a reader needs before opening any: per shard its
file name, bytes, examples, seconds and examples per task, and the totals. Streaming start-up
reads only the index, so it costs the same for 10 thousand examples as for 10 million.

A set may also hold the recipe's dev split, as ``dev-000000.tar`` ... beside the training
shards, listed in the index under ``splits.dev`` in the same form (index version 2; sets of
version 1 have none). The streamed run's dev loss reads its first examples.

This module imports no torch.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import Example, example_from_dict

INDEX_FILE = "index.json"
FORMAT = "webdataset"  # index.json's "format"
SHARD_PATTERN = "shard-{:06d}.tar"
DEV_PATTERN = "dev-{:06d}.tar"  # the dev split's shards, beside the training shards
INDEX_VERSION = 2  # 2: the index may list a dev split under "splits"
DEFAULT_SHARD_SIZE = "1GB"
# Audio encodings a shard can hold: soundfile's (format, subtype) for each member extension.
AUDIO_FORMATS = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16")}
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_URL = re.compile(r"^[a-z][a-z0-9+.-]*:")  # http:, https:, pipe:, s3:, gs:, file: (not C:\ paths: 2+ letters)


def webdataset(module: str) -> Any:
    """A module of the ``webdataset`` package, or an error that says how to install it."""
    import importlib

    try:
        return importlib.import_module(f"webdataset.{module}")
    except ModuleNotFoundError:
        raise ModuleNotFoundError("shard sets need the webdataset package: pip install 'qaudio[shards]'") from None


def parse_size(text: str) -> int:
    """``1GB`` -> 10**9 bytes (KB/MB/GB/TB decimal, KiB/MiB/GiB/TiB binary, bare numbers bytes)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text or "")
    unit = m.group(2).upper() if m else None
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"--shard-size {text!r}: expected a positive size such as 500MB, 1GB or 2GiB")
    return int(float(m.group(1)) * _UNITS[unit])


def is_url(location: str) -> bool:
    return bool(_URL.match(location)) and not re.match(r"^[A-Za-z]:[\\/]", location)


# ---- the index ---------------------------------------------------------------------------------


@dataclass
class ShardInfo:
    name: str  # file name, relative to the index's location
    bytes: int = 0
    examples: int = 0
    seconds: float = 0.0
    tasks: dict[str, int] = field(default_factory=dict)  # examples per task


@dataclass
class ShardIndex:
    """``index.json``: the shards of one set, in order, and their totals."""

    shards: list[ShardInfo]
    audio_format: str = "flac"
    source: str = ""  # what was written: "RECIPE SPLIT (ROOT)"
    location: str = ""  # where the index was read from (a folder or a URL prefix); not saved
    dev: ShardIndex | None = None  # the dev split's shards, in the same folder; None: the set has none

    @property
    def examples(self) -> int:
        return sum(s.examples for s in self.shards)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def tasks(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for s in self.shards:
            for t, n in s.tasks.items():
                total[t] = total.get(t, 0) + n
        return total

    def url(self, k: int) -> str:
        """Where shard ``k`` is read from: beside the index."""
        return f"{self.location.rstrip('/')}/{self.shards[k].name}"

    def to_dict(self) -> dict:
        data = {"format": FORMAT, "version": INDEX_VERSION, **self._split_dict()}
        if self.dev is not None:
            data["splits"] = {"dev": self.dev._split_dict()}
        return data

    def _split_dict(self) -> dict:
        return {
            "source": self.source,
            "audio_format": self.audio_format,
            "examples": self.examples,
            "seconds": round(self.seconds, 3),
            "bytes": self.bytes,
            "tasks": self.tasks,
            "shards": [vars(s) for s in self.shards],
        }


def index_location(location: str) -> tuple[str, str]:
    """(the index's own path or URL, the folder or URL prefix its shards are under)."""
    if location.endswith(".json"):
        return location, location.rsplit("/", 1)[0] if "/" in location else "."
    return f"{location.rstrip('/')}/{INDEX_FILE}", location


def read_index(location: str) -> ShardIndex:
    """The index of a shard set: a folder, its ``index.json``, or a URL of either."""
    index_path, base = index_location(str(location))
    try:
        if is_url(index_path):
            with webdataset("gopen").gopen(index_path, "rb") as f:
                data = json.loads(f.read().decode("utf-8"))
        else:
            data = json.loads(Path(index_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{index_path}: no shard index; a shard set is the folder `qaudio data RECIPE "
            f"--shards OUT` wrote (OUT/{INDEX_FILE} and OUT/shard-*.tar)"
        ) from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{index_path}: cannot read the shard index: {e}") from None
    if data.get("format") != FORMAT:
        raise ValueError(
            f"{index_path}: format {data.get('format')!r}, expected {FORMAT!r} (written by `qaudio data --shards`)"
        )
    dev = data.get("splits", {}).get("dev")
    return _split_index(data, base, _split_index(dev, base) if dev else None)


def _split_index(data: dict, base: str, dev: ShardIndex | None = None) -> ShardIndex:
    shards = [ShardInfo(**s) for s in data["shards"]]
    return ShardIndex(shards, data.get("audio_format", "flac"), data.get("source", ""), base, dev)


# ---- writing -------------------------------------------------------------------------------------


def encode_audio(samples: Any, audio_format: str) -> bytes:
    """16 kHz mono float samples -> encoded bytes (16-bit FLAC or WAV) with soundfile."""
    import numpy as np
    import soundfile as sf

    from .audio import SAMPLE_RATE

    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio format {audio_format!r}; valid: {', '.join(AUDIO_FORMATS)}")
    fmt, subtype = AUDIO_FORMATS[audio_format]
    buf = io.BytesIO()
    # Resampling can overshoot [-1, 1] by a hair; clip rather than let 16-bit PCM wrap around.
    sf.write(buf, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, format=fmt, subtype=subtype)
    return buf.getvalue()


@dataclass
class AudioRecord:
    """One example to write: its record and its audio, either encoded bytes (with their file
    extension) or None, meaning "decode ``example.audio`` and encode it"."""

    example: Example
    data: bytes | None = None
    extension: str = ""


class ShardWriter:
    """Writes records into ``OUT/shard-000000.tar``, ``-000001.tar`` ... and ``OUT/index.json``.

    A shard is closed when the next example would take it past ``shard_size`` bytes (a single
    larger example gets a shard of its own). Each shard is written as ``.partial`` and renamed
    when complete, and the index is written last, so an interrupted run leaves no index that
    names a half-written shard. ``pattern``: the shards' file names (:data:`DEV_PATTERN` for a
    dev split, whose writer is only :meth:`finish` ed: its index goes into the training split's).
    """

    def __init__(
        self,
        out: str | os.PathLike,
        shard_size: int,
        audio_format: str = "flac",
        source: str = "",
        pattern: str = SHARD_PATTERN,
    ):
        if audio_format not in AUDIO_FORMATS:
            raise ValueError(f"--audio-format {audio_format!r}; valid: {', '.join(AUDIO_FORMATS)}")
        self.out = Path(out)
        if (self.out / INDEX_FILE).exists():
            raise ValueError(f"{self.out} already holds a shard set ({INDEX_FILE}); write to a new folder or delete it")
        self.out.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.audio_format = audio_format
        self.pattern = pattern
        self.index = ShardIndex([], audio_format, source, str(self.out))
        self._tar = None
        self._count = 0  # examples written: the next key

    def _open(self) -> None:
        TarWriter = webdataset("writer").TarWriter

        info = ShardInfo(self.pattern.format(len(self.index.shards)))
        self.index.shards.append(info)
        self._partial = self.out / (info.name + ".partial")
        self._tar = TarWriter(str(self._partial), encoder=False)

    def _close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        info = self.index.shards[-1]
        final = self.out / info.name
        os.replace(self._partial, final)
        info.bytes = final.stat().st_size
        self._tar = None

    def write(self, record: AudioRecord) -> None:
        ex = record.example
        if record.data is None:
            from .audio import load_audio

            data, extension = (
                encode_audio(load_audio(ex.audio, allow_silence=True).samples, self.audio_format),
                self.audio_format,
            )
        else:
            data, extension = record.data, record.extension.lstrip(".").lower() or self.audio_format
        key = f"{self._count:09d}"  # no dots: WebDataset splits a member name at its first dot
        member = f"{key}.{extension}"
        meta = json.loads(ex.to_json())
        meta["audio"] = member
        sample = {"__key__": key, extension: data, "json": json.dumps(meta, ensure_ascii=False).encode("utf-8")}
        size = len(data) + len(sample["json"]) + 3 * 512  # two tar headers and padding, roughly
        current = self.index.shards[-1] if self._tar is not None else None
        if current is not None and current.examples and current.bytes + size > self.shard_size:
            self._close()
            current = None
        if current is None:
            self._open()
            current = self.index.shards[-1]
        assert self._tar is not None  # _open() made it
        self._tar.write(sample)
        current.bytes += size  # an estimate while writing; the file's size once closed
        current.examples += 1
        current.seconds = round(current.seconds + ex.duration, 3)
        current.tasks[ex.task] = current.tasks.get(ex.task, 0) + 1
        self._count += 1

    def finish(self, what: str = "") -> ShardIndex:
        """Close the last shard; the index of what was written (an error if nothing was)."""
        self._close()
        if self._count == 0:
            raise ValueError(f"no {what + ' ' if what else ''}examples to write to {self.out}")
        return self.index

    def close(self, dev: ShardIndex | None = None) -> ShardIndex:
        """Close the last shard and write ``OUT/index.json`` (listing ``dev``, a dev split's index)."""
        self.finish()
        self.index.dev = dev
        tmp = self.out / (INDEX_FILE + ".partial")
        tmp.write_text(json.dumps(self.index.to_dict(), indent=1), encoding="utf-8")
        os.replace(tmp, self.out / INDEX_FILE)
        return self.index


def write_shards(
    records: Iterable[AudioRecord],
    out: str | os.PathLike,
    shard_size: int,
    audio_format: str = "flac",
    source: str = "",
    dev: Iterable[AudioRecord] | None = None,
    dev_source: str = "",
) -> ShardIndex:
    """Write ``records`` as a shard set in the folder ``out``, with ``dev`` (a dev split's
    records) as its ``dev-*.tar`` shards; returns its index. The dev split is written first: it
    is small, and a missing one stops the command before the long part."""
    dev_index = None
    if dev is not None:
        dev_writer = ShardWriter(out, shard_size, audio_format, dev_source, DEV_PATTERN)
        for record in dev:
            dev_writer.write(record)
        dev_index = dev_writer.finish("dev")
    writer = ShardWriter(out, shard_size, audio_format, source)
    for record in records:
        writer.write(record)
    return writer.close(dev_index)


# ---- reading -------------------------------------------------------------------------------------


@dataclass
class ShardSample:
    """One example read back: the record (``audio`` = ``SHARD_URL#MEMBER``, for messages) and its bytes."""

    example: Example
    audio: bytes
    shard: int  # index of the shard in its set
    offset: int  # examples before it in its shard


def read_shard(index: ShardIndex, k: int, skip: int = 0) -> Iterator[ShardSample]:
    """The examples of shard ``k`` in order, from example ``skip`` on (those before are read past,
    not decoded: a tar stream cannot seek over a URL)."""
    tariterators = webdataset("tariterators")
    url = index.url(k)
    for offset, sample in enumerate(
        tariterators.group_by_keys(tariterators.tar_file_expander(tariterators.url_opener([{"url": url}])))
    ):
        if offset < skip:
            continue
        where = f"{url}, example {offset}"
        if "json" not in sample:
            raise ValueError(f"{where} (key {sample.get('__key__')}): no .json record; not a qaudio shard")
        record = json.loads(sample["json"])
        member = record.get("audio", "")
        extension = member.rsplit(".", 1)[-1] if "." in member else ""
        if extension not in sample:
            raise ValueError(f"{where}: the record names audio {member!r}, which the shard does not hold")
        record["audio"] = f"{url}#{member}"
        yield ShardSample(example_from_dict(record, where), sample[extension], k, offset)
