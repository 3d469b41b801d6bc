"""The one reader of the decoded image arrays (`data/processed/images_S.npy`).

Training, evaluation, export and the figures all read the arrays through `load_images`, so a
missing, corrupt or mismatched array gives the same clear error wherever it is met.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hccr.errors import DataError


def load_images(path: str | os.PathLike, *, rows: int | None = None, size: int | None = None) -> np.ndarray:
    """A read-only memory map of an images_S.npy: uint8 (N, S, S).

    `rows`: the number of images the index lists (must match); `size`: the side the caller
    needs (a checkpoint's input size). DataError naming the file otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image array missing (run `hccr resize` first)")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from exc
    if (
        not isinstance(array, np.ndarray)
        or array.dtype != np.uint8
        or array.ndim != 3
        or array.shape[1] != array.shape[2]
    ):
        raise DataError(
            f"{path}: expected a uint8 array of shape (N, S, S), found {getattr(array, 'dtype', type(array).__name__)} "
            f"{getattr(array, 'shape', '')}"
        )
    if rows is not None and array.shape[0] != rows:
        raise DataError(f"{path}: {array.shape[0]} rows but the index has {rows}")
    if size is not None and array.shape[1] != size:
        raise DataError(f"{path}: images are {array.shape[1]}x{array.shape[2]}, {size}x{size} expected")
    return array


class StackedArrays:
    """An ensemble's input: one (N, S, S) array per member's framing, read as (B, M, S, S)."""

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, ids) -> np.ndarray:
        return np.stack([np.asarray(array[ids]) for array in self.arrays], axis=1)
