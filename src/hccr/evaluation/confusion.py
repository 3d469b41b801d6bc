"""A confusion summary that stays readable at 3,755 classes, instead of a 3,755 x 3,755 picture.

For one role's labels and predictions: top-5 accuracy, the most frequent mistakes (true ->
predicted, with the share of the true class they take), the look-alike pairs a model mixes up
in either direction, and the hardest classes (lowest accuracy, with what they are taken for).
Every figure comes from per-sample labels in O(N + K) memory; a per-class table with the
same columns serves as the full per-class accuracy table (`per_class_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hccr.evaluation import metrics

# Above this many classes the details JSON leaves out the full confusion matrix (3,755 classes
# would make it 14 M numbers) and the metrics JSON carries top-5 accuracy.
LARGE_LABEL_SET = 100
TOP = 25


def per_class_table(y_true: Any, y_pred: Any, characters: Sequence[str]) -> pd.DataFrame:
    """One row per class: label, character, n, correct, accuracy, and its most frequent wrong prediction."""
    k = len(characters)
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    support, hits, _ = metrics.class_counts(t, p, k)
    wrong = t != p
    # The most frequent wrong prediction of each class: sort mistakes by (true, count desc, predicted).
    keys, counts = np.unique(t[wrong] * k + p[wrong], return_counts=True)
    order = np.lexsort((keys % k, -counts, keys // k))
    first = np.unique(keys[order] // k, return_index=True)[1]
    taken_for = np.full(k, -1, dtype=np.int64)
    taken_count = np.zeros(k, dtype=np.int64)
    taken_for[keys[order][first] // k] = keys[order][first] % k
    taken_count[keys[order][first] // k] = counts[order][first]
    chars = np.asarray(list(characters), dtype=object)
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
    return pd.DataFrame(
        {
            "label": np.arange(k),
            "character": chars,
            "n": support,
            "correct": hits,
            "accuracy": accuracy,
            "taken_for": np.where(taken_for >= 0, chars[np.maximum(taken_for, 0)], None),
            "taken_for_count": taken_count,
        }
    )


def summary(y_true: Any, y_pred: Any, scores: Any, characters: Sequence[str], top: int = TOP) -> dict[str, Any]:
    """Top-5 accuracy, most confused (directed and merged) pairs and the hardest classes, as JSON-ready data."""
    k = len(characters)
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    support = np.bincount(t, minlength=k)
    table = per_class_table(t, p, characters)
    present = table[table["n"] > 0]
    hardest = present.sort_values(["accuracy", "n", "label"], ascending=[True, False, True], kind="stable").head(top)
    return {
        "top5_accuracy": metrics.top_k_accuracy(t, scores, 5),
        "most_confused": [
            {
                "true": a,
                "predicted": b,
                "true_character": characters[a],
                "predicted_character": characters[b],
                "count": n,
                "share_of_true": n / int(support[a]),
            }
            for a, b, n in metrics.confused_pairs(t, p, top, k)
        ],
        "most_confused_pairs": [
            {"a": a, "b": b, "a_character": characters[a], "b_character": characters[b], "count": n}
            for a, b, n in metrics.confused_pairs(t, p, top, k, symmetric=True)
        ],
        "hardest_classes": [
            {
                "label": int(row.label),
                "character": row.character,
                "n": int(row.n),
                "correct": int(row.correct),
                "accuracy": float(row.accuracy),
                "taken_for": row.taken_for,
                "taken_for_count": int(row.taken_for_count),
            }
            for row in hardest.itertuples(index=False)
        ],
    }
