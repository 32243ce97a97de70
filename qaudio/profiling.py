"""Wall time and peak memory of one phase of a run: ``with measure("decode", device) as m: ...``.

After the block, ``m.seconds`` is its wall time and ``m.peak_bytes`` the most memory held at
any moment *during the block*, not since the process started: evaluation and the benchmarks
run several systems or batch sizes in one process, and a process-lifetime peak
(``getrusage().ru_maxrss``) would give every later phase the largest earlier one's number.

What is measured, by device:

* **CUDA**: bytes of tensors allocated by PyTorch's caching allocator
  (``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``); the
  device is synchronized at both ends, so the time covers the queued kernels too.
* **CPU** (and any other device): the process's resident set, what the operating system really
  holds for it (tensors, Python objects, allocator slack). Two ways, chosen by ``cpu_method``:

  - ``"high-water mark"`` (the default on Linux): the kernel's own peak, ``VmHWM``, reset at the
    phase's start by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0, proc(5)). The
    kernel updates it on every page it maps, so no spike is missed, and it costs nothing while
    the phase runs.
  - ``"sampled"`` (elsewhere, or where ``clear_refs`` cannot be written): a background thread
    reads the resident set every millisecond; a spike shorter than that can be missed, so the
    result is a lower bound, and ``method`` says which was used.

  Before either starts, garbage is collected and glibc's ``malloc_trim`` hands freed heap back
  to the system, so memory an earlier phase freed is not counted as this phase's.
  ``tracemalloc`` was not used: it sees only Python's own allocations, not PyTorch's.

Phases do not nest: both the kernel's mark and CUDA's peak counter are per process, so an
inner phase would reset the outer one's; a nested :func:`measure` raises.

References: proc(5) (``/proc/pid/clear_refs``, ``VmHWM``, ``VmRSS``); PyTorch's CUDA memory
management notes (``torch.cuda.reset_peak_memory_stats``, ``max_memory_allocated``).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SAMPLE_INTERVAL_S = 0.001  # the sampled method's period: spikes shorter than this can be missed
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class Measurement:
    """One phase's wall time and peak memory (filled in when its ``with`` block ends)."""

    phase: str  # the name given to measure()
    device: str  # "cpu", "cuda:0", ...
    method: str = ""  # how peak_bytes was measured (see the module docstring), short enough for a table
    seconds: float = 0.0  # wall time of the block
    start_bytes: int = 0  # memory held when the block began (resident set, or CUDA tensors)
    peak_bytes: int = 0  # the most memory held at any moment during the block

    @property
    def added_bytes(self) -> int:
        """How far the block rose above what was held when it began."""
        return self.peak_bytes - self.start_bytes


_active: str | None = None  # the phase being measured: phases do not nest


# ---- The resident set (CPU) -----------------------------------------------------------------


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes; None off Linux."""
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def resident_bytes() -> int:
    """The process's resident set size now, in bytes."""
    try:  # Linux: the second field of statm is resident pages; cheap enough to sample each ms
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE_SIZE
    except OSError:
        import psutil  # installed with accelerate

        return psutil.Process().memory_info().rss


def _release_freed_memory() -> None:
    """Collect garbage and hand freed heap back to the system, so it does not count as resident."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc only; elsewhere nothing to trim this way


def _reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM to the current VmRSS
    except OSError:
        return False
    return _status_bytes("VmHWM") is not None


@contextlib.contextmanager
def _high_water_mark(m: Measurement) -> Iterator[None]:
    if not _reset_high_water_mark():
        raise OSError("/proc/self/clear_refs cannot be written here")
    m.start_bytes = _status_bytes("VmRSS") or 0
    try:
        yield
    finally:
        m.peak_bytes = _status_bytes("VmHWM") or 0


@contextlib.contextmanager
def _sampled(m: Measurement) -> Iterator[None]:
    m.start_bytes = peak = resident_bytes()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(SAMPLE_INTERVAL_S):
            peak = max(peak, resident_bytes())

    thread = threading.Thread(target=sample, name="qaudio-memory-sampler", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        m.peak_bytes = max(peak, resident_bytes())


# cpu_method name -> (context manager filling start_bytes and peak_bytes, the description stored in ``method``)
CPU_METHODS: dict[str, tuple[Callable, str]] = {
    "high-water mark": (_high_water_mark, "phase peak RSS (VmHWM)"),
    "sampled": (_sampled, f"phase peak RSS (sampled every {SAMPLE_INTERVAL_S * 1000:g} ms)"),
}


def default_cpu_method() -> str:
    """``high-water mark`` where the kernel's mark can be reset (Linux), else ``sampled``."""
    return "high-water mark" if _reset_high_water_mark() else "sampled"


# ---- CUDA -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _cuda(m: Measurement) -> Iterator[None]:
    import torch

    device = torch.device(m.device)
    torch.cuda.synchronize(device)  # kernels queued before the phase are not its own
    torch.cuda.reset_peak_memory_stats(device)
    m.start_bytes = torch.cuda.memory_allocated(device)
    try:
        yield
    finally:
        m.peak_bytes = torch.cuda.max_memory_allocated(device)


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(torch.device(device))


# ---- Tensors only (CPU) ---------------------------------------------------------------------


def tensor_peak_bytes(run: Callable[[], object]) -> int:
    """The peak of live tensor bytes that ``run()`` allocates on CPU above what was live before,
    from the PyTorch profiler's allocation records (each alloc and free, with its size and time).

    Unlike :func:`measure` it counts PyTorch's tensors only, exactly, with no allocator slack or
    library memory: what a memory model of tensors (:mod:`qaudio.plan`) is checked against.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


# ---- The phase --------------------------------------------------------------------------------


@contextlib.contextmanager
def measure(phase: str, device: object = "cpu", cpu_method: str | None = None) -> Iterator[Measurement]:
    """Measure the ``with`` block: ``m.seconds``, ``m.peak_bytes`` (its own peak), ``m.method``.

    ``device`` is where the phase's tensors live (``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a
    ``torch.device``); ``cpu_method`` picks how CPU memory is read (:data:`CPU_METHODS`; default
    :func:`default_cpu_method`). The fields are filled in when the block ends, also when it raises.
    """
    global _active
    device = str(device)
    if cpu_method is not None and cpu_method not in CPU_METHODS:
        raise ValueError(f"unknown cpu_method {cpu_method!r}; valid choices: {', '.join(CPU_METHODS)}")
    if _active is not None:
        raise RuntimeError(
            f"measure({phase!r}) inside measure({_active!r}): phases do not nest, because the "
            "peak counters are per process and the inner phase would reset the outer one's"
        )
    if device.startswith("cuda"):
        if device == "cuda":
            import torch

            device = f"cuda:{torch.cuda.current_device()}"
        meter, method = _cuda, "phase peak CUDA allocation"
    else:
        _release_freed_memory()
        meter, method = CPU_METHODS[cpu_method or default_cpu_method()]
    m = Measurement(phase=phase, device=device, method=method)
    _active = phase
    try:
        with meter(m):
            start = time.perf_counter()
            try:
                yield m
            finally:
                _synchronize(device)  # queued GPU work belongs to the phase's time
                m.seconds = time.perf_counter() - start
    finally:
        _active = None
