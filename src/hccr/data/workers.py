"""How many worker processes the data steps use (kept free of torch: a data step must not pay for importing it)."""

from __future__ import annotations

import os


def default_workers() -> int:
    """Worker processes for decoding: at most 2 (the machines here share 2 cores)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        available = os.cpu_count() or 1
    return max(1, min(2, available))
