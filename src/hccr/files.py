"""Reading the pipeline's own artifacts, with errors that name the file, row or column."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from hccr.errors import DataError


def read_table(path: str | os.PathLike, columns: Iterable[str], what: str) -> pd.DataFrame:
    """A CSV that must exist, parse, and carry `columns`; DataError naming the file otherwise."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read {what}: {err}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: {what} lacks column(s) {missing} (has {list(frame.columns)})")
    return frame


def read_json_object(path: str | os.PathLike, what: str, missing_ok: bool = False) -> dict[str, Any] | None:
    """A JSON file holding one object; None for a missing file when `missing_ok`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing_ok:
            return None
        raise DataError(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: {what} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: {what}: expected a JSON object")
    return data
