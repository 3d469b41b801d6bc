"""How many worker processes the data steps use (kept free of torch: a data step must not pay for importing it)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from tqdm import tqdm


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


def map_row_chunks(
    function: Callable[[tuple], tuple[np.ndarray, list]],
    path: str,
    rows: int,
    size: int,
    extra: Sequence,
    chunk: int,
    workers: int | None = None,
    desc: str = "rows",
    progress: bool = True,
) -> tuple[np.ndarray, list]:
    """Run `function((path, start, stop, *extra)) -> (uint8 (stop - start, size, size), items)`
    over the rows of the array at `path` in chunks, in `workers` processes (each reads its rows
    from the file itself); return (the parts in row order, the items concatenated)."""
    jobs = [(str(path), start, min(start + chunk, rows), *extra) for start in range(0, rows, chunk)]
    out = np.empty((rows, size, size), dtype=np.uint8)
    items: list = []
    workers = default_workers() if workers is None else max(1, workers)
    bar = tqdm(total=rows, desc=desc, unit="img", file=sys.stderr, disable=not progress)
    with process_pool(workers) as pool:
        for (_, start, stop, *_), (part, found) in zip(jobs, pool.map(function, jobs), strict=True):
            out[start:stop] = part
            items += found
            bar.update(stop - start)
    bar.close()
    return out, items
