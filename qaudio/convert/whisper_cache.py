"""Any Whisper source, as something ``from_pretrained`` reads: CTranslate2 sources are imported once.

The audio tower (:mod:`qaudio.model.encoder`) and the Whisper peer (:mod:`qaudio.peers`) both
take a Whisper source and call :func:`whisper_checkpoint`: a hub id or a Hugging Face directory
is passed through; a CTranslate2 directory or a pip package (``pip:<name>``, or the bare name)
is converted by :func:`qaudio.convert.whisper.import_whisper` into
``$QAUDIO_CACHE/whisper/<name>-<key>/`` once and reused.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ..cache import cache_dir, files_key, publish, staging_dir
from ..config import PIP_PREFIX
from .ctranslate2 import directory_files
from .whisper import IMPORTER_VERSION, PROVENANCE_FILE, import_whisper
from .whisper_packages import find_ctranslate2_dir, is_ctranslate2_source


def cached_whisper_dir(source: str) -> Path:
    """Import ``source`` once into ``$QAUDIO_CACHE/whisper/<name>-<key>/`` and reuse it.

    The key hashes the source files' names, sizes and modification times (and the importer
    version), so a reinstalled package is imported again. The import is written to a temporary
    directory and renamed into place, so a crash or a concurrent process never leaves half a model.
    """
    directory = find_ctranslate2_dir(source)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source.removeprefix(PIP_PREFIX)).name or "whisper")
    key = files_key(directory_files(directory), salt=f"qaudio-whisper-import-v{IMPORTER_VERSION}")
    final = cache_dir("whisper") / f"{name}-{key}"
    if (final / PROVENANCE_FILE).is_file():
        return final
    tmp = staging_dir(final)
    try:
        import_whisper(source, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists() and not (final / PROVENANCE_FILE).is_file():
        shutil.rmtree(final)  # an unfinished import from an older qaudio: replace it
    return publish(tmp, final)


def whisper_checkpoint(source: str) -> str:
    """What ``from_pretrained`` reads for ``source``: the cached import of CTranslate2 weights,
    else ``source`` itself (a hub id or a Hugging Face directory)."""
    return str(cached_whisper_dir(source)) if is_ctranslate2_source(source) else source
