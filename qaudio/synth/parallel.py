"""Ordered parallel map over worker processes, with a progress bar.

eSpeak NG is one global synthesizer per process, so parallel synthesis needs processes, not
threads. Results come back in job order whatever the number of workers; together with
per-job seeding this makes the output independent of ``workers``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from typing import TypeVar

from ..hardware import usable_cores

J = TypeVar("J")
R = TypeVar("R")


def default_workers() -> int:
    """The CPU cores this process may use."""
    return usable_cores()


def map_ordered(
    fn: Callable[[J], R], jobs: Iterable[J], workers: int, progress: bool = True, desc: str = "synthesizing"
) -> list[R]:
    """``[fn(job) for job in jobs]``, on ``workers`` processes (``fn`` must be picklable)."""
    from tqdm import tqdm

    jobs = list(jobs)
    results: list[R] = []
    with tqdm(total=len(jobs), unit="clip", desc=desc, disable=not progress) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(fn(job))
                bar.update()
            return results
        # fork where there is one: workers inherit the imported modules, no re-import per worker
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(min(workers, len(jobs))) as pool:
            for r in pool.imap(fn, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers)))):
                results.append(r)
                bar.update()
    return results
