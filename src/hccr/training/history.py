"""`history.csv`: one row per epoch (epoch counts 1.. across phases), rewritten atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hccr.atomic import write_csv

COLUMNS = (
    "epoch",
    "phase",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "seconds",
    "images_per_second",
)


def write_history(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write all rows so far (DVC plots read the file while a run goes on)."""
    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    write_csv(path, frame)
