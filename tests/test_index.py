"""hccr.data.index: the index table and read_index's column checks."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from hccr.data.index import INDEX_COLUMNS, build_index, main, read_index
from hccr.errors import DataError

from helpers_data import CHARACTERS, VALUES, copy_raw, make_raw


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return make_raw(tmp_path_factory.mktemp("raw") / "cm", writers=3, samples=2)


def test_index_table(raw, tmp_path):
    out = tmp_path / "interim" / "index.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "hccr.data.index", "--raw", str(raw), "--out", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    table = read_index(out)
    assert tuple(table.columns) == INDEX_COLUMNS
    assert len(table) == 3 * 2 * 15
    assert list(table["id"]) == list(range(len(table)))
    keys = list(zip(table.writer, table["sample"], table.code, strict=False))
    assert keys == sorted(keys)
    assert (table.label == table.code - 1).all()
    assert (table.character == [CHARACTERS[c - 1] for c in table.code]).all()
    assert (table.value == [VALUES[c - 1] for c in table.code]).all()
    for row in table.itertuples():
        assert row.path == f"data/data/input_{row.writer}_{row.sample}_{row.code}.jpg"
        assert (raw / row.path).is_file()


def test_sorted_even_if_csv_shuffled(raw, tmp_path):
    folder = copy_raw(raw, tmp_path / "raw")
    frame = pd.read_csv(folder / "chinese_mnist.csv")
    frame.sample(frac=1.0, random_state=1).to_csv(folder / "chinese_mnist.csv", index=False)
    assert build_index(folder).drop(columns="id").equals(build_index(raw).drop(columns="id"))


def test_missing_image_named(raw, tmp_path):
    folder = copy_raw(raw, tmp_path / "raw")
    (folder / "data" / "data" / "input_2_2_5.jpg").unlink()
    assert main(["--raw", str(folder), "--out", str(tmp_path / "index.csv")]) == 2
    with pytest.raises(DataError, match="input_2_2_5.jpg"):
        build_index(folder)
    assert not (tmp_path / "index.csv").exists()


def test_read_index_missing_column_and_file(raw, tmp_path):
    path = tmp_path / "index.csv"
    build_index(raw).drop(columns="label").to_csv(path, index=False)
    with pytest.raises(DataError, match=r"index.csv: missing column 'label'"):
        read_index(path)
    with pytest.raises(DataError, match="nothere.csv"):
        read_index(tmp_path / "nothere.csv")
