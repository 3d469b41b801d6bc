"""Gather the sweep's cells (the study's Table 2) into one table.

`python -m hccr.evaluation.sweep --model M --size Z --cells models/sweep/M/Z/g1-lr0.0001-b10 ...
--out models/sweep/summary.csv` reads each cell folder's `history.csv` and `train.json` (the
files the Snakemake rule declares) and writes one row per cell: its settings and the last
epoch's train/val loss and accuracy (as Table 2 reports them), plus the best validation
accuracy, its epoch and the wall time. With the sweep disabled (no cells) the table has its
header and no rows, so downstream steps and DVC always find it. The figures and the report
read this table, never the cell folders.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from hccr.atomic import write_csv
from hccr.errors import DataError, reports_errors
from hccr.files import read_json_object

CELL = re.compile(r"^g(?P<gpus>\d+)-lr(?P<lr>[0-9.e+-]+)-b(?P<batch>\d+)$")
COLUMNS = [
    "model",
    "size",
    "run",
    "gpus",
    "learning_rate",
    "batch_size",
    "epochs",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "best_val_accuracy",
    "best_epoch",
    "seconds_total",
    "start",
]


def cell_row(folder: Path, model: str, size: str) -> dict:
    """One Table 2 row from a cell folder's history (last epoch) and summary."""
    match = CELL.match(folder.name)
    if match is None:
        raise DataError(f"{folder}: not a sweep cell folder (expected g<gpus>-lr<lr>-b<batch>)")
    history_path = folder / "history.csv"
    try:
        history = pd.read_csv(history_path)
    except (FileNotFoundError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{history_path}: missing or empty ({err})") from None
    if history.empty:
        raise DataError(f"{history_path}: no epochs recorded")
    last = history.iloc[-1]
    summary = read_json_object(folder / "train.json", "train summary", missing_ok=True) or {}
    best = int(history["val_accuracy"].to_numpy().argmax())
    return {
        "model": model,
        "size": size,
        "run": folder.name,
        "gpus": int(match["gpus"]),
        "learning_rate": float(match["lr"]),
        "batch_size": int(match["batch"]),
        "epochs": int(last["epoch"]),
        "train_loss": float(last["train_loss"]),
        "train_accuracy": float(last["train_accuracy"]),
        "val_loss": float(last["val_loss"]),
        "val_accuracy": float(last["val_accuracy"]),
        "best_val_accuracy": summary.get("best_val_accuracy", float(history["val_accuracy"].iloc[best])),
        "best_epoch": summary.get("best_epoch", int(history["epoch"].iloc[best])),
        "seconds_total": summary.get("seconds_total", float(history["seconds"].sum())),
        "start": summary.get("start", ""),
    }


def gather(cells: list[Path], model: str, size: str) -> pd.DataFrame:
    rows = [cell_row(Path(cell), model, size) for cell in cells]
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["gpus", "learning_rate", "batch_size"], ignore_index=True)


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hccr sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--size", required=True)
    parser.add_argument("--cells", type=Path, nargs="*", default=[], help="the cell folders g<gpus>-lr<lr>-b<batch>")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    table = gather(args.cells, args.model, args.size)
    write_csv(args.out, table)
    print(f"{len(table)} sweep cells -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
