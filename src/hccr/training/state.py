"""`last.pt`: everything a killed run needs to go on exactly where it stopped.

A plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(..., weights_only=True)`: model and optimizer state, the phase and epoch reached,
the step counter the schedule is a function of, history rows, best-so-far metrics (and the
best weights, so checkpoint.pt can be restored if a workflow engine deleted it), the early
stopping counter and the run's fingerprint. Each epoch's randomness is reseeded from
(seed, epoch), so no RNG state is needed.

The fingerprint must cover the data, not only its shape: after the images change (same
shape, other pixels, another resize filter) a workflow engine deletes the run's outputs and
reruns it, and a `last.pt` from the old data must then start a new run, never be restored.
`data_digest` hashes the pixels of every image the run reads (about 2 s per GB).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hccr.atomic import atomic_path

STATE_FORMAT = 1


def ids_digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def data_digest(images: np.ndarray, *id_arrays: np.ndarray, chunk: int = 2048) -> str:
    """blake2b of the shape, dtype and pixels of the rows `id_arrays` name, in that order.

    Read in chunks, so a memory-mapped array of gigabytes is hashed without loading it whole.
    """
    digest = hashlib.blake2b(digest_size=32)
    digest.update(f"{images.dtype.str}{tuple(images.shape[1:])}".encode())
    for ids in id_arrays:
        ids = np.asarray(ids, dtype=np.int64)
        digest.update(len(ids).to_bytes(8, "little"))
        for start in range(0, len(ids), chunk):
            digest.update(np.ascontiguousarray(images[ids[start : start + chunk]]).tobytes())
    return digest.hexdigest()


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": STATE_FORMAT, **state}, tmp)


def load_state(path: str | Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state when it belongs to this run; None (start afresh) otherwise."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a foreign or damaged file: never trust it, start again
        print(f"warning: {path}: unreadable resume state ({err}); starting afresh", file=sys.stderr)
        return None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        print(f"warning: {path}: unknown resume state format; starting afresh", file=sys.stderr)
        return None
    if state.get("fingerprint") != fingerprint:
        print(
            f"warning: {path} was written by a run with other settings (config, data, seed or "
            "world size); starting afresh",
            file=sys.stderr,
        )
        return None
    return state
