"""What this machine's CPU is, how many cores this process may use, and whether it has bf16 units.

Training's ``--precision auto`` (bf16 only where the CPU computes it natively: without
AVX512-BF16 or AMX, bf16 autocast is emulated and slower than fp32), ``qaudio doctor`` and the
run summary saved with every model all ask here; so do training's thread count, the synthetic
corpus's worker count and the benchmarks, for the number of usable cores. Torch-free.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from pathlib import Path


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return ""


def cpu_flags() -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo does not exist)."""
    match = re.search(r"^flags\s*:(.*)$", _cpuinfo(), flags=re.MULTILINE)
    return set(match.group(1).split()) if match else set()


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 matmul units (AVX512-BF16 or AMX)."""
    return bool(cpu_bf16_units())


def cpu_bf16_units() -> list[str]:
    """The CPU's native bf16 matmul units by name, the fastest first: "AMX" (Intel's tile units)
    and "AVX512-BF16" (vector instructions, e.g. AMD Zen 4 without AMX); empty without either.
    They differ a lot: on 2 cores the demo's bf16 step took 0.24-0.30 s with AMX and 0.46 s with
    AVX512-BF16 alone (benchmarks/RESULTS.md)."""
    flags = cpu_flags()
    units = (("AMX", {"amx_bf16", "amx_tile"} <= flags), ("AVX512-BF16", "avx512_bf16" in flags))
    return [name for name, present in units if present]


def cpu_name() -> str:
    """The CPU model in words, e.g. 'AMD EPYC 9R14 96-Core Processor'."""
    match = re.search(r"^model name\s*:(.*)$", _cpuinfo(), flags=re.MULTILINE)
    return match.group(1).strip() if match else (platform.processor() or platform.machine())


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which containers and taskset narrow;
    ``os.cpu_count()`` where the platform has no affinity)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
