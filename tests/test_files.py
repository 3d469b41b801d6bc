"""hccr.files: artifacts read with errors that name the file and what is wrong."""

import pytest

from hccr.errors import DataError
from hccr.files import read_json_object, read_table


def test_read_table_checks_existence_parsing_and_columns(tmp_path):
    good = tmp_path / "split.csv"
    good.write_text("id,role\n0,train\n")
    assert list(read_table(good, ("id", "role"), "split file")["role"]) == ["train"]
    with pytest.raises(DataError, match="missing.csv: split file not found"):
        read_table(tmp_path / "missing.csv", ("id",), "split file")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv: cannot read split file"):
        read_table(empty, ("id",), "split file")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['label'\]"):
        read_table(good, ("id", "label"), "index")


def test_read_json_object(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('{"epochs": 3}')
    assert read_json_object(path, "train summary") == {"epochs": 3}
    assert read_json_object(tmp_path / "none.json", "x", missing_ok=True) is None
    with pytest.raises(DataError, match="none.json: train summary not found"):
        read_json_object(tmp_path / "none.json", "train summary")
    path.write_text("[1]")
    with pytest.raises(DataError, match="expected a JSON object"):
        read_json_object(path, "train summary")
    path.write_text("{oops")
    with pytest.raises(DataError, match="not valid JSON"):
        read_json_object(path, "train summary")
