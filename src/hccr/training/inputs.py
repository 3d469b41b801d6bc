"""What a run trains on: the image array and the train/val rows of a split file.

The `test` role is read only to be ignored: training never touches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hccr.classes import Classes
from hccr.data.arrays import load_images
from hccr.data.index import read_index
from hccr.data.splits import integer_column, read_split
from hccr.errors import DataError


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


def load_run_data(images_path: str | Path, index_path: str | Path, split_path: str | Path) -> RunData:
    """Read the arrays and CSVs, check they agree, and return train/val ids with labels."""
    images = load_images(images_path)
    index = read_index(index_path)
    labels = integer_column(index, "label", index_path)
    index["label"] = labels
    classes = Classes.from_index(index, str(index_path))
    if len(index) != len(images):
        raise DataError(f"{index_path}: {len(index)} rows but {images_path} has {len(images)} images")
    split = read_split(split_path, len(index), required=("train", "val"))

    def pick(role: str) -> tuple[np.ndarray, np.ndarray]:
        ids = split.loc[split["role"] == role, "id"].to_numpy()
        return ids, labels[ids]

    train_ids, train_labels = pick("train")
    val_ids, val_labels = pick("val")
    return RunData(images, classes, train_ids, train_labels, val_ids, val_labels)
