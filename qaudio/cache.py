"""qaudio's cache folder, in one place: ``$QAUDIO_CACHE``, default ``~/.cache/qaudio``.

Converted Whisper weights (``whisper/``, ``ctranslate2/``), caption-metric jars
(``caption-jars/``) and audio decoded from Hugging Face datasets (``hf_audio/``) live under it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``cache_dir("whisper")`` -> $QAUDIO_CACHE/whisper (not created here)."""
    root = os.environ.get("QAUDIO_CACHE") or "~/.cache/qaudio"
    return Path(root).expanduser().joinpath(*parts)


def files_key(files: list[Path], salt: str) -> str:
    """A short key that changes when any of ``files`` is replaced (name, size, mtime) or ``salt`` does."""
    digest = hashlib.sha256(salt.encode())
    for path in sorted(files, key=lambda p: p.name):
        st = path.stat()
        digest.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:12]


def staging_dir(final: Path) -> Path:
    """A fresh temporary directory beside ``final``, to be filled and then :func:`publish`-ed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"


def publish(tmp: Path, final: Path) -> Path:
    """Move a finished ``tmp`` directory to ``final`` atomically; a concurrent winner is kept.

    Readers see either no ``final`` or a complete one, never half a directory.
    """
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():
            raise
    return final
