"""Per-phase peak memory (qaudio.profiling): a phase's peak is its own, not the process's so far."""

from __future__ import annotations

import time

import pytest
import torch

from qaudio.profiling import CPU_METHODS, default_cpu_method, measure

MB = 2**20


def _hold(megabytes: int, seconds: float = 0.02) -> None:
    """Allocate and touch ``megabytes``, keep them long enough for a 1 ms sampler to see, free them."""
    block = torch.ones(megabytes * MB // 4)  # float32, every page written
    time.sleep(seconds)
    del block


@pytest.mark.parametrize("method", list(CPU_METHODS))
def test_a_phase_peak_is_its_own_not_cumulative(method):
    if method == "high-water mark" and default_cpu_method() != method:
        pytest.skip("/proc/self/clear_refs is not writable here")
    with measure("big", "cpu", cpu_method=method) as big:
        _hold(200)
    with measure("small", "cpu", cpu_method=method) as small:
        _hold(20)
    assert big.method == CPU_METHODS[method][1] and big.seconds > 0
    assert big.added_bytes > 150 * MB, big
    # A cumulative peak (ru_maxrss) would give the small phase the big one's peak.
    assert small.peak_bytes < big.peak_bytes - 100 * MB, (big, small)
    assert 10 * MB < small.added_bytes < 100 * MB, small


def test_phases_do_not_nest_and_bad_methods_are_refused():
    with measure("outer"):
        with pytest.raises(RuntimeError, match="do not nest"):
            with measure("inner"):
                pass
    with pytest.raises(ValueError, match="valid choices: high-water mark, sampled"):
        with measure("x", cpu_method="guess"):
            pass


def test_the_fields_are_filled_when_the_phase_raises():
    with pytest.raises(ZeroDivisionError):
        with measure("fails") as m:
            _hold(30, seconds=0.0)
            1 / 0
    assert m.seconds > 0 and m.peak_bytes >= m.start_bytes > 0
    with measure("after"):  # the failed phase no longer counts as active
        pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_phase_peak_is_its_own():
    with measure("big", "cuda") as big:
        block = torch.ones(200 * MB // 4, device="cuda")
        del block
    with measure("small", "cuda") as small:
        block = torch.ones(20 * MB // 4, device="cuda")
        del block
    assert big.added_bytes >= 200 * MB and small.added_bytes < 30 * MB, (big, small)
    assert small.device.startswith("cuda:") and small.method == "phase peak CUDA allocation"
