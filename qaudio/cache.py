"""qaudio's cache folder, in one place: ``$QAUDIO_CACHE``, default ``~/.cache/qaudio``.

Converted Whisper weights (``whisper/``, ``ctranslate2/``), caption-metric jars
(``caption-jars/``) and audio decoded from Hugging Face datasets (``hf_audio/``) live under it.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``cache_dir("whisper")`` -> $QAUDIO_CACHE/whisper (not created here)."""
    root = os.environ.get("QAUDIO_CACHE") or "~/.cache/qaudio"
    return Path(root).expanduser().joinpath(*parts)
