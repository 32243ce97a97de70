"""What every benchmark shares: the prompt, devices, timing, memory, FLOPs, workers and output.

The test clips are in :mod:`benchmarks.clips`, the two systems compared (and what is held equal
between them) in :mod:`benchmarks.systems`.

Memory is measured per process: every (system, mode) runs in a fresh subprocess, and the peak
is taken over the measured steps only (:func:`qaudio.profiling.measure`: the resident set's
high-water mark on CPU, reset at the phase's start; CUDA's peak allocation on GPU).

Reference: ``torch.utils.flop_counter`` for FLOPs.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from qaudio.dtypes import torch_dtype
from qaudio.hardware import usable_cores
from qaudio.specs import get_task

REPO_ROOT = Path(__file__).resolve().parents[1]
DTYPES = {name: torch_dtype(name) for name in ("fp32", "bf16")}  # the dtypes the benchmarks measure
DEVICES = ("cpu", "cuda")


def asr_prompt(style: str = "tags") -> str:
    """The ASR prompt qaudio trains with (the ``asr`` task spec's tags), used on both sides."""
    return get_task("asr").request("en").prompt(style)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# ---- Devices, timing and memory --------------------------------------------------------------


def resolve_device(device: str, dtype: str) -> torch.device:
    if device not in DEVICES:
        raise ValueError(f"--device {device!r}; expected one of: {', '.join(DEVICES)}")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r}; expected one of: {', '.join(DTYPES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device (use --device cpu)")
    return torch.device(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str):
    """bf16 mixed precision (fp32 master weights, as accelerate's ``mixed_precision="bf16"``) or nothing."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")


# ---- FLOPs and the matmul peak ---------------------------------------------------------------


def _cpu_flash_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def _cpu_flash_attention_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out, query, key, value)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matmuls, convolutions and attention ``fn`` runs (torch's FlopCounterMode).

    torch 2.13's counter has no formula for the CPU flash-attention kernel that SDPA uses on
    CPU, so one is added (the same formula as for the GPU kernels).
    """
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {
        aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_attention_backward_flops,
    }
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak_flops(device: torch.device, dtype: str, seconds: float = 1.5) -> float:
    """The best FLOP/s of a large square matmul in this process: the machine's practical limit.

    The size grows from 256 until one product takes a measurable time or reaches 2048 (CPU) /
    8192 (GPU): a CPU without native bf16 runs a 2048 bf16 product for minutes, and a smaller
    product tells the same story (that the peak is low) in a fraction of a second.
    """
    limit = 8192 if device.type == "cuda" else 2048
    n = 256
    while True:
        a = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
        b = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
        torch.matmul(a, b)  # warm-up: kernels chosen, pages touched
        synchronize(device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        synchronize(device)
        if n >= limit or time.perf_counter() - t0 > 0.02:
            break
        n *= 2
    best, deadline = 0.0, time.perf_counter() + seconds
    reps = 10 if device.type == "cuda" else 1
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        synchronize(device)
        best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0))
    return best


# ---- Machine, workers and output --------------------------------------------------------------


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        match = re.search(r"^Model name:\s+(.+)$", out, re.M)
        if match:
            return match.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def cpu_cores() -> int:
    return usable_cores()


def machine_info(device: torch.device) -> dict:
    import transformers

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": cpu_cores(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_line(info: dict, threads: int = 0) -> str:
    """One line naming the machine, for the printed report."""
    n = threads or info["torch_threads"]
    line = (
        f"machine: {info['cpu']}, {info['cores']} cores ({n} torch thread{'s' if n != 1 else ''}), "
        f"torch {info['torch']}, transformers {info['transformers']}, {info['date']}"
    )
    return line + (f", {info['gpu']}" if "gpu" in info else "")


def run_worker(module: str, spec: dict, timeout_s: float = 900) -> dict:
    """Run ``python -m module --worker SPEC`` in a fresh process and return its result dict.

    A fresh process per (system, mode) keeps peak memory and allocator state of one run from
    colouring the next.
    """
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", module, "--worker", json.dumps(spec), "--result", str(result)]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0 or not result.is_file():
            raise RuntimeError(
                f"benchmark worker {spec.get('system')}/{spec.get('mode', '')} failed "
                f"(exit {proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        return json.loads(result.read_text())


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A plain-text table: ``columns`` are (key, header, format spec); missing values print as '-',
    strings as they are (so a row can carry preformatted cells such as ratios)."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        line = []
        for key, _, fmt in columns:
            value = row.get(key)
            if value is None:
                line.append("-")
            else:
                line.append(format(value, fmt) if fmt and not isinstance(value, str) else str(value))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def load_warning(info_before: dict, results: Iterable[dict]) -> str | None:
    """A warning when other processes competed for the CPU while the benchmark ran."""
    loads = [info_before.get("load_average_1min", 0.0)] + [r.get("load_average_1min", 0.0) for r in results]
    worst = max(loads)
    cores = info_before.get("cores", 1)
    if worst > cores + 0.5:
        return (
            f"warning: the 1-min load average reached {worst:.1f} on {cores} cores: other processes competed "
            "for the CPU, so absolute figures are low and ratios less reliable; rerun on a quiet machine (on a "
            "shared one, --threads 1 keeps torch's threads from stalling on each other)"
        )
    return None


def write_json(path: str | os.PathLike, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
