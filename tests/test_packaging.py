"""The wheel lists its packages by hand (the spec folders travel under other names), so a new
subpackage of qaudio/ must be added to pyproject.toml too, or an installed qaudio lacks it."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # the standard library's from Python 3.11

REPO = Path(__file__).resolve().parents[1]


def test_every_qaudio_subpackage_is_in_the_wheel():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "qaudio").rglob("__init__.py")}
    assert on_disk - listed == set(), f"add these to [tool.setuptools] packages in pyproject.toml: {on_disk - listed}"
