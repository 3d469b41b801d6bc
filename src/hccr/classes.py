"""The label set of a dataset: which character each label means, and its numeric value if any.

Classes come from the data, never from a constant: the index (`data/interim/index.csv`)
defines them as its (label, character, value) triples in label order, a checkpoint carries
them, and models, metrics, export and predict follow what they are given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hccr.errors import DataError


@dataclass(frozen=True)
class Classes:
    characters: tuple[str, ...]
    values: tuple[int | None, ...]  # the numeral's value (Chinese MNIST); None where a class has none

    def __post_init__(self) -> None:
        if len(self.values) != len(self.characters):
            raise ValueError(f"{len(self.characters)} characters but {len(self.values)} values")
        if len(set(self.characters)) != len(self.characters):
            raise ValueError("a character appears under two labels")

    def __len__(self) -> int:
        return len(self.characters)

    @property
    def text(self) -> str:
        """The characters in label order as one string (how checkpoints and ONNX metadata store them)."""
        return "".join(self.characters)

    def value_of(self, character: str) -> int | None:
        try:
            return self.values[self.characters.index(character)]
        except ValueError:
            return None

    def to_meta(self) -> dict[str, Any]:
        return {"characters": self.text, "values": list(self.values)}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], where: str) -> Classes:
        """The class list a checkpoint or model file records (`characters`, optional `values`)."""
        text = meta.get("characters")
        if not isinstance(text, str) or not text:
            raise DataError(f"{where}: no class list ('characters' missing or empty)")
        values = meta.get("values")
        if values is None:
            values = [None] * len(text)
        if not isinstance(values, (list, tuple)) or len(values) != len(text):
            raise DataError(f"{where}: 'values' must list one value per character ({len(text)})")
        if any(v is not None and (isinstance(v, bool) or not isinstance(v, int)) for v in values):
            raise DataError(f"{where}: 'values' must be integers or null")
        try:
            return cls(tuple(text), tuple(values))
        except ValueError as err:
            raise DataError(f"{where}: {err}") from None

    @classmethod
    def from_index(cls, index: pd.DataFrame, where: str) -> Classes:
        """The label set an index defines: labels 0..N-1, one character (and value) per label."""
        for column in ("label", "character"):
            if column not in index.columns:
                raise DataError(f"{where}: missing column {column!r}")
        if index.empty:
            raise DataError(f"{where}: no rows, so no classes")
        columns = ["label", "character"] + (["value"] if "value" in index.columns else [])
        pairs = index[columns].drop_duplicates().sort_values("label", kind="stable")
        labels = pairs["label"].to_numpy()
        if pairs["label"].duplicated().any():
            label = int(pairs.loc[pairs["label"].duplicated(), "label"].iloc[0])
            raise DataError(f"{where}: label {label} names more than one character (or value)")
        if labels[0] != 0 or labels[-1] != len(labels) - 1:
            raise DataError(
                f"{where}: labels must run 0..{len(labels) - 1} without gaps, found {labels[0]}..{labels[-1]}"
            )
        values = pairs["value"].tolist() if "value" in pairs.columns else [None] * len(pairs)
        values = tuple(None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v) for v in values)
        try:
            return cls(tuple(str(c) for c in pairs["character"]), values)
        except ValueError as err:
            raise DataError(f"{where}: {err}") from None
