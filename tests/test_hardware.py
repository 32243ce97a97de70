"""CPU facts from /proc/cpuinfo, read in one place (qaudio.hardware)."""

import pytest

from qaudio import hardware

AMX_XEON = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
AVX2_EPYC = "processor\t: 0\nmodel name\t: AMD EPYC 7R32\nflags\t\t: fpu fma avx avx2\n"
ZEN4_EPYC = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"


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


@pytest.mark.parametrize(
    "text, units, demo_step_s",
    [(AMX_XEON, ["AMX", "AVX512-BF16"], 0.30), (ZEN4_EPYC, ["AVX512-BF16"], 0.47), (AVX2_EPYC, [], 0.45)],
)
def test_the_demo_expects_the_step_of_the_fastest_bf16_unit(monkeypatch, text, units, demo_step_s):
    """Zen 4's AVX512-BF16 alone runs the demo's step ~1.5x slower than AMX: sized for AMX, every
    Zen 4 run would be told that its machine is slow."""
    from qaudio.demo import REFERENCE_STEP_S, reference_step_s

    monkeypatch.setattr(hardware, "_cpuinfo", lambda: text)
    assert hardware.cpu_bf16_units() == units
    assert reference_step_s("bf16") == demo_step_s
    assert reference_step_s("fp32") == REFERENCE_STEP_S["fp32"]
