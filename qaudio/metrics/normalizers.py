"""Text normalisers of the anchors' scoring code, and where each one comes from.

- OpenAI Whisper's ``EnglishTextNormalizer`` and ``BasicTextNormalizer`` (Radford et al.,
  arXiv:2212.04356, appendix C), which Qwen2-Audio's ``eval_audio/whisper_normalizer/``
  copies unchanged. The code is the port that transformers ships
  (``transformers.models.whisper.english_normalizer``); the English spelling map is OpenAI's
  ``english.json`` (``normalizer.json`` in Hugging Face Whisper checkpoints), read as a data
  file from the installed ``whisper-normalizer`` distribution, whose own normaliser code is
  *not* used: it adds rules OpenAI's does not have (``cause`` -> ``because``, ``dunno``,
  ``kinda``). :data:`SPELLING_MAP_SHA256` pins the map's content; a different file is refused.
- Chinese text normalisation as Qwen2-Audio's ``eval_audio/cn_tn.py`` applies it, in
  qaudio's own implementation: :mod:`.chinese`.
- Cantonese: ``zhconv.convert(text, "zh-cn")`` (traditional to simplified characters).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import cache
from importlib.resources import files

from .base import library_versions

# sha256 of OpenAI's english.json (openai-whisper 20250625, identical to Qwen2-Audio's copy).
SPELLING_MAP_SHA256 = "6607f948be9824d2e1b2fa2223cd94c06c45afa4e05ea0e3d5e1f2bdffde2465"
SPELLING_MAP_DISTRIBUTION = "whisper-normalizer"  # ships the map as whisper_normalizer/normalizers/english.json


@cache
def spelling_map() -> dict[str, str]:
    """OpenAI's British-to-American spelling map, checked against its known content."""
    try:
        raw = files("whisper_normalizer").joinpath("normalizers/english.json").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise ValueError(
            "Whisper's English normaliser needs OpenAI's spelling map, which qaudio reads from the "
            f"{SPELLING_MAP_DISTRIBUTION} distribution: pip install whisper-normalizer"
        ) from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SPELLING_MAP_SHA256:
        raise ValueError(
            f"the installed {SPELLING_MAP_DISTRIBUTION} ships an English spelling map with sha256 {digest}, "
            f"not OpenAI's ({SPELLING_MAP_SHA256}); install a version that ships OpenAI's english.json"
        )
    return json.loads(raw)


@cache
def whisper_english() -> Callable[[str], str]:
    """OpenAI's EnglishTextNormalizer (transformers' port, OpenAI's spelling map)."""
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer(spelling_map())


@cache
def whisper_basic() -> Callable[[str], str]:
    """OpenAI's BasicTextNormalizer (transformers' port): symbols to spaces, bracketed words dropped."""
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    return BasicTextNormalizer()


def to_simplified(text: str) -> str:
    """Traditional to simplified Chinese characters, as Qwen2-Audio scores Cantonese."""
    import zhconv

    return zhconv.convert(text, "zh-cn")


def chinese_tn(text: str) -> str:
    """Qwen2-Audio's Chinese normalisation (numbers spelled out, punctuation to spaces)."""
    from .chinese import normalize

    return normalize(text)


def provenance(*names: str) -> dict[str, str]:
    """Where each named normaliser comes from, with versions, for a result's provenance."""
    versions = library_versions("transformers", SPELLING_MAP_DISTRIBUTION, "zhconv")
    sources = {
        "whisper_english": f"OpenAI Whisper EnglishTextNormalizer: transformers {versions['transformers']} "
        f"(models.whisper.english_normalizer) with OpenAI's english.json sha256 {SPELLING_MAP_SHA256[:16]} "
        f"from {SPELLING_MAP_DISTRIBUTION} {versions[SPELLING_MAP_DISTRIBUTION]} (data file only)",
        "whisper_basic": f"OpenAI Whisper BasicTextNormalizer: transformers {versions['transformers']} "
        "(models.whisper.english_normalizer)",
        "chinese_tn": "qaudio.metrics.chinese: Qwen2-Audio eval_audio/cn_tn.py TextNorm with evaluate_asr.py's options "
        "(numbers, dates, money, phone numbers, fractions and percentages spelled out; punctuation to spaces)",
        "zhconv": f"zhconv {versions['zhconv']} convert(text, 'zh-cn')",
        "qwen_remove_sp": "qaudio.metrics.wer.remove_sp: Qwen eval_audio remove_sp (tags to spaces, spaces folded)",
    }
    return {name: sources[name] for name in names}
