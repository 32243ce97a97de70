"""``qaudio doctor``: one line per item with the fix; non-zero exit when something needed is missing."""

from __future__ import annotations

import argparse

from qaudio import doctor


def _pretend_missing(monkeypatch, *names: str, versions: dict | None = None) -> None:
    real = doctor.installed_version
    monkeypatch.setattr(
        doctor, "installed_version", lambda name: None if name in names else (versions or {}).get(name) or real(name)
    )


def test_a_missing_core_package_fails_with_the_pip_command(monkeypatch, capsys):
    _pretend_missing(monkeypatch, "peft")
    assert doctor.main(argparse.Namespace(require="")) == 1
    out = capsys.readouterr().out
    assert "[FAIL] peft: not installed -> fix: pip install 'peft>=0.13'" in out
    assert "1 problem(s) must be fixed" in out


def test_a_missing_required_extra_fails_an_optional_one_does_not(monkeypatch):
    reqs = doctor.requirements()
    _pretend_missing(monkeypatch, "fastapi")
    by_item = {c.item: c for c in doctor.check_extras(reqs, required={"serve"})}
    assert by_item["extra serve"].status == "fail" and by_item["extra serve"].fix == "pip install 'qaudio[serve]'"
    by_item = {c.item: c for c in doctor.check_extras(reqs, required=set())}
    assert by_item["extra serve"].status == "info"
    assert doctor.check_extras(reqs, required={"nonsense"})[0].status == "fail"


def test_versions_outside_the_tested_range_are_warned(monkeypatch):
    _pretend_missing(monkeypatch, versions={"transformers": "4.46.0", "torch": "2.13.0+cpu"})
    by_item = {c.item: c for c in doctor.check_core(doctor.requirements())}
    assert by_item["transformers"].status == "warn" and "outside the tested range" in by_item["transformers"].detail
    assert by_item["torch"].status == "ok"  # a local build tag (+cpu) is inside the range
