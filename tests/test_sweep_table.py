"""hccr.evaluation.sweep gathers the sweep cells into the Table 2 analogue."""

import json

import pandas as pd
import pytest

from hccr.errors import DataError
from hccr.evaluation import sweep


def _cell(root, name, rows, summary=None):
    folder = root / "inception_gru" / "small" / name
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "history.csv", index=False)
    if summary is not None:
        (folder / "train.json").write_text(json.dumps(summary))
    return folder


def _epoch(epoch, val_accuracy):
    return {
        "epoch": epoch,
        "phase": "train",
        "train_loss": 1.0 / epoch,
        "train_accuracy": 0.5 + epoch / 10,
        "val_loss": 2.0 / epoch,
        "val_accuracy": val_accuracy,
        "lr": 1e-4,
        "seconds": 3.0,
        "images_per_second": 100.0,
    }


def test_gather_reads_last_epoch_and_parses_cell_names(tmp_path):
    _cell(
        tmp_path,
        "g4-lr0.0001-b40",
        [_epoch(1, 0.6), _epoch(2, 0.9)],
        {"best_val_accuracy": 0.9, "seconds_total": 6.5, "start": "scratch"},
    )
    _cell(tmp_path, "g1-lr0.001-b10", [_epoch(1, 0.2)])
    out = tmp_path / "summary.csv"
    cells = sorted((tmp_path / "inception_gru" / "small").iterdir())
    assert (
        sweep.main(["--model", "inception_gru", "--size", "small", "--cells", *map(str, cells), "--out", str(out)]) == 0
    )
    table = pd.read_csv(out)
    assert list(table["gpus"]) == [1, 4]  # sorted like Table 2
    row = table.iloc[1]
    assert (row["learning_rate"], row["batch_size"], row["epochs"]) == (1e-4, 40, 2)
    assert row["val_accuracy"] == pytest.approx(0.9)
    assert row["train_loss"] == pytest.approx(0.5)
    assert row["seconds_total"] == pytest.approx(6.5)
    assert (row["run"], row["best_epoch"]) == ("g4-lr0.0001-b40", 2)
    # without train.json the figures come from the history itself
    assert table.iloc[0]["seconds_total"] == pytest.approx(3.0)
    assert table.iloc[0]["best_val_accuracy"] == pytest.approx(0.2)


def test_no_cells_gives_header_only(tmp_path):
    out = tmp_path / "summary.csv"
    assert sweep.main(["--model", "m", "--size", "s", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert table.empty and list(table.columns) == sweep.COLUMNS


def test_empty_history_is_named(tmp_path):
    folder = _cell(tmp_path, "g1-lr0.001-b10", [_epoch(1, 0.2)])
    (folder / "history.csv").write_text("")
    with pytest.raises(DataError, match="history.csv"):
        sweep.gather([folder], "inception_gru", "small")
