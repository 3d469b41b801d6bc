"""Chinese MNIST as Kaggle ships it: the file layout, its 15 classes, and how to read and check it.

Every step that touches the raw folder (fetch, index, resize, the synthetic generator) reads
the layout from here, so it is defined once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from PIL import Image

from hccr.classes import Classes
from hccr.errors import DataError

# The 15 classes in `code` order (label = code - 1).
CHINESE_MNIST = Classes(
    characters=tuple("零一二三四五六七八九十百千万亿"),
    values=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 1000, 10000, 100000000),
)
CSV_NAME = "chinese_mnist.csv"
IMAGE_DIR = Path("data") / "data"
CSV_COLUMNS = ("suite_id", "sample_id", "code", "value", "character")
IMAGE_SIZE = 64


def image_name(suite: int, sample: int, code: int) -> str:
    """The Kaggle file name of one image."""
    return f"input_{suite}_{sample}_{code}.jpg"


def read_raw_csv(folder: str | os.PathLike) -> pd.DataFrame:
    """Read `chinese_mnist.csv` of a raw folder; DataError naming the file/column/row if malformed."""
    path = Path(folder) / CSV_NAME
    if not path.is_file():
        raise DataError(f"{path}: missing (expected the Kaggle CSV {CSV_NAME})")
    try:
        frame = pd.read_csv(path, encoding="utf-8-sig", dtype={"character": str})
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as a UTF-8 CSV ({exc})") from exc
    missing = [c for c in CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))})")
    if frame.empty:
        raise DataError(f"{path}: no rows")
    for column in ("suite_id", "sample_id", "code", "value"):
        numeric = pd.to_numeric(frame[column], errors="coerce")
        bad = numeric.isna() | (numeric != numeric.round())
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise DataError(
                f"{path}: row {row + 2} (line {row + 2}): {column}={frame[column].iloc[row]!r} is not an integer"
            )
        frame[column] = numeric.astype("int64")
    return frame


def check_rows(frame: pd.DataFrame, csv_path: Path) -> None:
    """Codes in 1..15, value/character consistent with the code, no duplicate images."""
    codes = frame["code"].to_numpy()
    count = len(CHINESE_MNIST)
    bad_code = (codes < 1) | (codes > count)
    if bad_code.any():
        row = int(bad_code.argmax())
        raise DataError(f"{csv_path}: line {row + 2}: code={codes[row]} is outside 1..{count}")
    expected_char = [CHINESE_MNIST.characters[c - 1] for c in codes]
    expected_value = [CHINESE_MNIST.values[c - 1] for c in codes]
    for column, expected in (("character", expected_char), ("value", expected_value)):
        mismatch = frame[column].to_numpy() != pd.Series(expected, index=frame.index).to_numpy()
        if mismatch.any():
            row = int(mismatch.argmax())
            raise DataError(
                f"{csv_path}: line {row + 2}: {column}={frame[column].iloc[row]!r} does not match "
                f"code {codes[row]} (expected {expected[row]!r})"
            )
    for column in ("suite_id", "sample_id"):
        if (frame[column] < 1).any():
            row = int((frame[column] < 1).to_numpy().argmax())
            raise DataError(f"{csv_path}: line {row + 2}: {column}={frame[column].iloc[row]} must be >= 1")
    dup = frame.duplicated(subset=["suite_id", "sample_id", "code"])
    if dup.any():
        row = int(dup.to_numpy().argmax())
        raise DataError(
            f"{csv_path}: line {row + 2}: duplicate image "
            f"{image_name(*frame.loc[frame.index[row], ['suite_id', 'sample_id', 'code']])}"
        )


def decode_image(path: str | os.PathLike) -> Image.Image:
    """Fully decode one image (a truncated JPEG raises here), checking 64x64 grayscale."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode != "L" or image.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise DataError(
                    f"{path}: is {image.size[0]}x{image.size[1]} mode {image.mode}, expected "
                    f"{IMAGE_SIZE}x{IMAGE_SIZE} grayscale (L)"
                )
            return image.copy()
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for broken/truncated files
        raise DataError(f"{path}: cannot be decoded ({exc})") from exc
