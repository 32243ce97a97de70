"""CPU facts from /proc/cpuinfo, read in one place (qaudio.hardware)."""

import pytest

from qaudio import hardware

AMX_XEON = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
AVX2_EPYC = "processor\t: 0\nmodel name\t: AMD EPYC 7R32\nflags\t\t: fpu fma avx avx2\n"


@pytest.mark.parametrize(
    "text, name, bf16", [(AMX_XEON, "Intel(R) Xeon(R) Platinum 8488C", True), (AVX2_EPYC, "AMD EPYC 7R32", False)]
)
def test_cpu_name_and_bf16_units_come_from_cpuinfo(monkeypatch, text, name, bf16):
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: text)
    assert hardware.cpu_name() == name
    assert hardware.cpu_has_bf16() is bf16
    from qaudio.train import resolve_precision

    if not __import__("torch").cuda.is_available():  # auto = bf16 only where the CPU has the units
        assert resolve_precision("auto") == ("bf16" if bf16 else "fp32")
    assert resolve_precision("fp16") == "fp16"


def test_without_cpuinfo_nothing_is_claimed(monkeypatch):
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: "")
    assert hardware.cpu_flags() == set() and not hardware.cpu_has_bf16() and hardware.cpu_name()
