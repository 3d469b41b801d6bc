"""What a run trains on: the image array and the train/val rows of a split file.

The `test` role is read only to be ignored: training never touches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hccr.classes import Classes
from hccr.errors import DataError
from hccr.files import read_table

ROLES = ("train", "val", "test")


@dataclass(frozen=True)
class RunData:
    images: np.ndarray  # (N, S, S) uint8, memory-mapped
    classes: Classes  # the label set the index defines
    train_ids: np.ndarray
    train_labels: np.ndarray
    val_ids: np.ndarray
    val_labels: np.ndarray

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])


def _int_column(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: row {row + 2}: column {column!r} is not an integer: {frame[column].iloc[row]!r}")
    return values.to_numpy(dtype=np.int64)


def load_images(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        images = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise DataError(f"{path}: image array not found") from None
    except ValueError as err:
        raise DataError(f"{path}: not a readable .npy array: {err}") from None
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise DataError(f"{path}: expected a uint8 array (N, S, S), got {images.dtype} {images.shape}")
    return images


def load_run_data(images_path: str | Path, index_path: str | Path, split_path: str | Path) -> RunData:
    """Read the arrays and CSVs, check they agree, and return train/val ids with labels."""
    images = load_images(images_path)
    index_path, split_path = Path(index_path), Path(split_path)
    index = read_table(index_path, ("id", "label", "character"), "index")
    split = read_table(split_path, ("id", "role"), "split file")

    index_ids = _int_column(index, "id", index_path)
    labels = _int_column(index, "label", index_path)
    if len(np.unique(index_ids)) != len(index_ids):
        raise DataError(f"{index_path}: duplicate ids")
    index["label"] = labels
    classes = Classes.from_index(index, str(index_path))
    if index_ids.size and (index_ids.min() < 0 or index_ids.max() >= len(images)):
        raise DataError(
            f"{index_path}: ids go up to {int(index_ids.max())} but {images_path} has {len(images)} rows"
        )
    label_of = dict(zip(index_ids.tolist(), labels.tolist()))

    split_ids = _int_column(split, "id", split_path)
    roles = split["role"].astype(str).to_numpy()
    unknown = ~np.isin(roles, ROLES)
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataError(f"{split_path}: row {row + 2}: unknown role {roles[row]!r}; expected one of {ROLES}")
    if len(np.unique(split_ids)) != len(split_ids):
        raise DataError(f"{split_path}: an id appears more than once")
    for row, image_id in enumerate(split_ids.tolist()):
        if image_id not in label_of:
            raise DataError(f"{split_path}: row {row + 2}: id {image_id} is not in {index_path}")

    def pick(role: str) -> tuple[np.ndarray, np.ndarray]:
        ids = split_ids[roles == role]
        if ids.size == 0:
            raise DataError(f"{split_path}: no rows with role {role!r}")
        return ids, np.array([label_of[i] for i in ids.tolist()], dtype=np.int64)

    train_ids, train_labels = pick("train")
    val_ids, val_labels = pick("val")
    return RunData(images, classes, train_ids, train_labels, val_ids, val_labels)
