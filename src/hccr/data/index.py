"""Build the one table every later step reads: one row per image of the raw folder.

`python -m hccr.data.index --raw data/raw/chinese-mnist --out data/interim/index.csv`

Columns `id,writer,sample,code,value,character,label,path`, sorted by (writer, sample, code);
`id` is the row number (0..N-1), `label` = code - 1, `path` is relative to the raw folder.
Counts come from the CSV, never assumed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from hccr.atomic import write_csv
from hccr.data.layout import CSV_NAME, IMAGE_DIR, check_rows, image_name, read_raw_csv
from hccr.errors import DataError, reports_errors

INDEX_COLUMNS = ("id", "writer", "sample", "code", "value", "character", "label", "path")


def build_index(raw: str | os.PathLike) -> pd.DataFrame:
    """The index table of a raw folder in the Kaggle layout (every listed image must exist)."""
    raw = Path(raw)
    frame = read_raw_csv(raw)
    check_rows(frame, raw / CSV_NAME)
    table = pd.DataFrame(
        {
            "writer": frame["suite_id"],
            "sample": frame["sample_id"],
            "code": frame["code"],
            "value": frame["value"],
            "character": frame["character"],
        }
    )
    table = table.sort_values(["writer", "sample", "code"], kind="stable").reset_index(drop=True)
    table.insert(0, "id", range(len(table)))
    table["label"] = table["code"] - 1
    table["path"] = [
        (IMAGE_DIR / image_name(w, s, c)).as_posix()
        for w, s, c in zip(table["writer"], table["sample"], table["code"], strict=True)
    ]
    image_dir = raw / IMAGE_DIR
    on_disk = {e.name for e in os.scandir(image_dir)} if image_dir.is_dir() else set()
    for row, path in enumerate(table["path"]):
        if Path(path).name not in on_disk:
            raise DataError(f"{raw / path}: listed in {raw / CSV_NAME} (index row {row}) but missing")
    return table


def read_index(path: str | os.PathLike) -> pd.DataFrame:
    """Read an index CSV, checking its columns (DataError naming the file and the missing column)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: index file missing (run `hccr index` first)")
    try:
        frame = pd.read_csv(path, encoding="utf-8", dtype={"character": str, "path": str})
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as an index CSV ({exc})") from exc
    missing = [c for c in INDEX_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r} (expected {', '.join(INDEX_COLUMNS)})")
    if not np.array_equal(frame["id"].to_numpy(), np.arange(len(frame))):
        raise DataError(f"{path}: column 'id' must be the row number 0..{len(frame) - 1}")
    return frame


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hccr index", description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", required=True, help="raw folder (Kaggle layout)")
    parser.add_argument("--out", required=True, help="index CSV to write")
    args = parser.parse_args(argv)
    table = build_index(args.raw)
    write_csv(args.out, table)
    print(f"{args.out}: {len(table)} images, {table['writer'].nunique()} writers, {table['code'].nunique()} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
