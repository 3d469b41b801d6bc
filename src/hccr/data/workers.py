"""How many worker processes the data steps use (kept free of torch: a data step must not pay for importing it)."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor


def default_workers() -> int:
    """Worker processes for decoding: at most 2 (the machines here share 2 cores)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        available = os.cpu_count() or 1
    return max(1, min(2, available))


class _InProcess:
    """The executor interface, in this process (one worker: no pool to start)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, function, items):
        return map(function, items)


def process_pool(workers: int) -> ProcessPoolExecutor | _InProcess:
    """A process pool of `workers`, or for one worker the same `map` run in this process."""
    return ProcessPoolExecutor(workers) if workers > 1 else _InProcess()
