"""The one reader of split files (`data/processed/splits/{scheme}/{size}.csv`: columns `id,role`).

Training and evaluation both read splits here, so both refuse the same faults with the same
words: an unknown role, an id twice, an id the index does not have, a role the step needs
but the file lacks.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from hccr.errors import DataError
from hccr.files import read_table

ROLES = ("train", "val", "test")


def integer_column(frame: pd.DataFrame, column: str, path: str | os.PathLike) -> np.ndarray:
    """`frame[column]` as int64; DataError naming the file and row of the first non-integer."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: row {row + 2}: column {column!r} is not an integer: {frame[column].iloc[row]!r}")
    return values.to_numpy(dtype=np.int64)


def read_split(path: str | os.PathLike, n_images: int, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """The split's rows (`id` int64, `role`), checked against an index of `n_images` rows."""
    path = Path(path)
    split = read_table(path, ("id", "role"), "split file")
    split["id"] = integer_column(split, "id", path)
    split["role"] = split["role"].astype(str)
    unknown = ~split["role"].isin(ROLES)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataError(f"{path}: row {row + 2}: unknown role {split['role'].iloc[row]!r}; expected one of {ROLES}")
    twice = split["id"].duplicated()
    if twice.any():
        row = int(np.flatnonzero(twice.to_numpy())[0])
        raise DataError(f"{path}: row {row + 2}: id {split['id'].iloc[row]} appears more than once")
    outside = (split["id"] < 0) | (split["id"] >= n_images)
    if outside.any():
        row = int(np.flatnonzero(outside.to_numpy())[0])
        raise DataError(f"{path}: row {row + 2}: id {split['id'].iloc[row]} is not in the index (0..{n_images - 1})")
    for role in required:
        if not (split["role"] == role).any():
            raise DataError(f"{path}: no rows with role {role!r}")
    return split
