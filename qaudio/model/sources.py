"""Where the pretrained parts come from: a local directory or a Hugging Face hub id.

transformers reads both through one call, and its errors describe its own internals: a
missing directory gives "Repo id must be in the form 'repo_name'...", a hub id with no
network a retry log and "We couldn't connect...". qaudio checks the source first and turns
a failure into one line that names the source and the config field (and its flag), says
what was expected there, and, for a hub id that could not be fetched, how to use a local
copy instead. Both raise ``FileNotFoundError`` (a ``ValueError`` for the wrong kind of
model), which the command line reports as one line with exit code 2.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, PretrainedConfig

_PATH_STARTS = ("/", "./", "../", "~", ".\\")


@dataclass(frozen=True)
class Source:
    """A pretrained part's source string, with what the messages about it need."""

    value: str  # the directory or hub id, as the user wrote it
    field: str  # the ModelConfig field it came from, e.g. "llm.source"
    flag: str  # the training flag that sets it, e.g. "--llm-source"
    expected: str  # what should be there, e.g. "a causal LM (Qwen2, Qwen3, Llama, ...)"
    marker: str = "config.json"  # the file every such directory holds

    def __str__(self) -> str:
        return f"{self.field} {self.value!r}"


def looks_like_path(value: str) -> bool:
    """True for what cannot be a hub id (``owner/name`` or a bare ``name``): absolute, relative or deeper paths."""
    return value.startswith(_PATH_STARTS) or value.count("/") > 1 or "\\" in value


def check_source(source: Source) -> None:
    """Refuse a path that is not a model directory before transformers mistakes it for a hub id."""
    path = Path(source.value).expanduser()
    if path.is_dir():
        if not (path / source.marker).is_file():
            raise FileNotFoundError(
                f"{source}: the directory has no {source.marker}; expected {source.expected} "
                "as save_pretrained writes it"
            )
        return
    if path.exists() or looks_like_path(source.value):
        what = "is a file, not a directory" if path.exists() else "does not exist"
        raise FileNotFoundError(
            f"{source} {what}; expected a directory holding {source.expected}, or a hub id "
            "(owner/name). Fix the path (was the directory moved?) or pass another with "
            f"{source.flag}"
        )


@contextlib.contextmanager
def fetch_errors(source: Source) -> Iterator[None]:
    """Inside: loading ``source``; an OSError (not found locally, hub unreachable or unknown) becomes one line."""
    try:
        yield
    except OSError as error:
        first_line = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        if Path(source.value).expanduser().is_dir():
            raise FileNotFoundError(
                f"{source} could not be loaded ({first_line}); expected a directory holding {source.expected}"
            ) from None
        raise FileNotFoundError(
            f"{source} is not a local directory, and fetching it from the Hugging Face hub failed ({first_line}); "
            f"expected {source.expected} as a hub id or a directory. Offline, download it where there is network "
            f"(`hf download {source.value} --local-dir DIR`), copy DIR here and pass {source.flag} DIR"
        ) from None


def pretrained_config(source: Source) -> PretrainedConfig:
    """The transformers config of a directory or hub id, with the errors above."""
    check_source(source)
    with fetch_errors(source):
        return AutoConfig.from_pretrained(source.value)
