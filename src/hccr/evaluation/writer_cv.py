"""Gather writer cross-validation's fold evaluations into one summary and a per-writer table.

`python -m hccr.evaluation.writer_cv --cv-dir models/cv --run cnn/full ... --folds K
--out-summary models/cv/summary.json --out-per-writer models/cv/per_writer.csv`

Each run `M/Z` has one folder per fold, `{cv_dir}/M/Z/fold{i}/`, whose `evaluation/metrics.json`
and `evaluation/predictions.csv` (hccr.evaluation.evaluate's outputs) are read. The summary
gives, per run, every fold's test accuracy (and val accuracy, images, writers) and across the
folds: the mean, the sample standard deviation, min and max, and a 95 % Student-t interval of
the mean (mean ± t(0.975, k-1) · std / sqrt(k)), plus the pooled accuracy over every test image.
The per-writer table has one row per (run, fold, test writer): images, correct, accuracy. With
no runs (the protocol is not writer_cv) both are written empty, so the report and DVC always
find them. The report reads these two files, never the fold folders.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from hccr.atomic import write_csv, write_json
from hccr.errors import DataError, reports_errors
from hccr.files import read_json_object, read_table

PER_WRITER_COLUMNS = ["model", "size", "fold", "writer", "n", "correct", "accuracy"]
PREDICTION_COLUMNS = ["id", "writer", "role", "true", "predicted"]


def fold_dir(cv_dir: str | Path, model: str, size: str, fold: int) -> Path:
    """Where fold `fold` of run model/size is trained and evaluated."""
    return Path(cv_dir) / model / size / f"fold{fold}"


def spread(values: list[float], level: float = 0.95) -> dict:
    """Mean, sample std, min, max and a Student-t interval of the mean across folds."""
    a = np.asarray(values, dtype=float)
    k = len(a)
    if k == 0:
        raise DataError("no fold accuracies to summarise")
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if k > 1 else float("nan")
    if k > 1:
        half = float(stats.t.ppf(0.5 + level / 2, k - 1) * std / math.sqrt(k))
        low, high = mean - half, mean + half
    else:
        low = high = float("nan")
    return {
        "folds": k,
        "mean": mean,
        "std": std,
        "min": float(a.min()),
        "max": float(a.max()),
        "ci_low": low,
        "ci_high": high,
        "ci_level": level,
    }


def per_writer(predictions: pd.DataFrame, model: str, size: str, fold: int) -> pd.DataFrame:
    """Accuracy of every test writer of one fold."""
    test = predictions[predictions["role"] == "test"]
    correct = (test["true"] == test["predicted"]).astype(int)
    table = (
        test.assign(correct=correct).groupby("writer", sort=True)["correct"].agg(n="count", correct="sum").reset_index()
    )
    table["accuracy"] = table["correct"] / table["n"]
    return table.assign(model=model, size=size, fold=fold)[PER_WRITER_COLUMNS]


def read_fold(cv_dir: str | Path, model: str, size: str, fold: int) -> tuple[dict, pd.DataFrame]:
    """One fold's scalars (from metrics.json) and its per-writer rows (from predictions.csv)."""
    folder = fold_dir(cv_dir, model, size, fold) / "evaluation"
    metrics = read_json_object(folder / "metrics.json", "fold metrics")
    test = metrics.get("test")
    if not isinstance(test, dict) or "accuracy" not in test:
        raise DataError(f"{folder / 'metrics.json'}: no test accuracy (was the fold evaluated on its test writers?)")
    predictions = read_table(folder / "predictions.csv", PREDICTION_COLUMNS, "fold predictions")
    writers = per_writer(predictions, model, size, fold)
    row = {
        "fold": fold,
        "test_accuracy": float(test["accuracy"]),
        "test_n": int(test.get("n", writers["n"].sum())),
        "test_writers": [int(w) for w in writers["writer"]],
        "val_accuracy": (metrics.get("val") or {}).get("accuracy"),
        "start": metrics.get("start"),
    }
    if row["test_n"] != int(writers["n"].sum()):
        raise DataError(
            f"{folder}: metrics.json counts {row['test_n']} test images, predictions.csv {int(writers['n'].sum())}"
        )
    return row, writers


def summarize(cv_dir: str | Path, runs: list[tuple[str, str]], folds: int) -> tuple[dict, pd.DataFrame]:
    """The summary (one entry per run) and the per-writer table of every run and fold."""
    entries, tables = [], []
    for model, size in runs:
        rows = []
        for fold in range(folds):
            row, writers = read_fold(cv_dir, model, size, fold)
            rows.append(row)
            tables.append(writers)
        accuracies = [r["test_accuracy"] for r in rows]
        correct = sum(round(r["test_accuracy"] * r["test_n"]) for r in rows)
        images = sum(r["test_n"] for r in rows)
        entries.append(
            {
                "model": model,
                "size": size,
                "folds": rows,
                "test_accuracy": spread(accuracies),
                "pooled_test_accuracy": correct / images if images else None,
                "test_images": images,
                "writers": sum(len(r["test_writers"]) for r in rows),
            }
        )
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=PER_WRITER_COLUMNS)
    return {"folds": folds, "runs": entries}, table


def _run_arg(text: str) -> tuple[str, str]:
    model, sep, size = text.partition("/")
    if not sep or not model or not size:
        raise argparse.ArgumentTypeError(f"--run {text!r}: expected MODEL/SIZE")
    return model, size


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hccr writer-cv", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cv-dir", required=True, help="models/cv (one {model}/{size}/fold{i} folder per fold)")
    parser.add_argument("--run", type=_run_arg, action="append", default=[], help="MODEL/SIZE (repeat); none: empty")
    parser.add_argument("--folds", type=int, required=True, help="k: folds 0..k-1 of every run")
    parser.add_argument("--out-summary", required=True)
    parser.add_argument("--out-per-writer", required=True)
    args = parser.parse_args(argv)
    if args.run and args.folds < 2:
        raise DataError(f"--folds {args.folds}: writer cross-validation needs at least 2 folds")
    summary, table = summarize(args.cv_dir, args.run, args.folds if args.run else 0)
    write_csv(args.out_per_writer, table)
    write_json(args.out_summary, summary)
    for entry in summary["runs"]:
        s = entry["test_accuracy"]
        print(
            f"{entry['model']}/{entry['size']}: mean {s['mean']:.4f} ± {s['std']:.4f} over {s['folds']} folds",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
