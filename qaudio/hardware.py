"""What this machine's CPU is and whether it has bf16 units: read from /proc/cpuinfo in one place.

Training's ``--precision auto`` (bf16 only where the CPU computes it natively: without
AVX512-BF16 or AMX, bf16 autocast is emulated and slower than fp32), ``qaudio doctor`` and the
run summary saved with every model all ask here. Torch-free.
"""

from __future__ import annotations

import functools
import platform
import re
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags of native bf16 matmul units


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
    return bool(cpu_flags() & set(BF16_FLAGS))


def cpu_name() -> str:
    """The CPU model in words, e.g. 'AMD EPYC 9R14 96-Core Processor'."""
    match = re.search(r"^model name\s*:(.*)$", _cpuinfo(), flags=re.MULTILINE)
    return match.group(1).strip() if match else (platform.processor() or platform.machine())
