"""Classification metrics as plain numpy functions (torch tensors are accepted too).

Labels are integer class indices 0..num_classes-1. Conventions that matter:

- `macro_f1` averages F1 over the classes that occur in `y_true`. A class that is present
  but never predicted has precision 0 (not undefined) and so F1 0. A class absent from
  `y_true` is left out of the average: its recall is undefined, and predictions of it
  already count against the true classes they were taken from (lower recall there).
- `per_class_accuracy` is recall per class; absent classes get NaN.
- `confusion_matrix` has rows = true class, columns = predicted class.
- `expected_calibration_error` uses equal-width confidence bins over [0, 1]; bin b holds
  confidences in (b/B, (b+1)/B], with confidence 0 in the first bin.
- `wilson_interval` is the Wilson score interval for a binomial proportion.
- `top_k_accuracy` counts a sample right when fewer than k classes score strictly higher than
  its true class (ties go the sample's way).

Per-class figures come from per-class counts (O(N + K)), never from a K x K matrix, so they
cost the same at 3,755 classes as at 15.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np


def _array(values: Any, dtype=None) -> np.ndarray:
    """numpy view of a list, array or (possibly CUDA, grad-carrying) torch tensor."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def _labels(y: Any, name: str) -> np.ndarray:
    arr = _array(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must hold integer class labels")
        arr = arr.astype(np.int64)
    return arr.astype(np.int64, copy=False)


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    return t, p


def _num_classes(num_classes: int | None, *arrays: np.ndarray) -> int:
    if num_classes is not None:
        return int(num_classes)
    return int(max((a.max() for a in arrays if a.size), default=-1)) + 1


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of predictions equal to the true label (NaN for no samples)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p)) if t.size else float("nan")


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts (num_classes, num_classes): entry [i, j] = samples of true class i predicted j."""
    t, p = _pair(y_true, y_pred)
    k = _num_classes(num_classes, t, p)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k):
        raise ValueError(f"labels must lie in 0..{k - 1}")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def class_counts(y_true: Any, y_pred: Any, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: (support = true count, hits = correct count, predicted count), each of length K."""
    t, p = _pair(y_true, y_pred)
    k = _num_classes(num_classes, t, p)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k):
        raise ValueError(f"labels must lie in 0..{k - 1}")
    support = np.bincount(t, minlength=k)
    hits = np.bincount(t[t == p], minlength=k)
    predicted = np.bincount(p, minlength=k)
    return support, hits, predicted


def per_class_f1(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """F1 per class; NaN for classes absent from y_true (see module docstring)."""
    support, tp, predicted = (c.astype(float) for c in class_counts(y_true, y_pred, num_classes))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = tp / support
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return np.where(support > 0, f1, np.nan)


def macro_f1(y_true: Any, y_pred: Any, num_classes: int | None = None) -> float:
    """Unweighted mean F1 over the classes present in y_true."""
    f1 = per_class_f1(y_true, y_pred, num_classes)
    present = ~np.isnan(f1)
    return float(f1[present].mean()) if present.any() else float("nan")


def per_class_accuracy(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Accuracy (recall) of each true class; NaN where the class has no samples."""
    support, hits, _ = class_counts(y_true, y_pred, num_classes)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(support > 0, hits / np.maximum(support, 1), np.nan)


def top_confusions(cm: Any, k: int = 10) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal cells as (true, predicted, count), count > 0.

    Ties are broken by (true, predicted) so the order is reproducible.
    """
    m = _array(cm)
    cells = [(int(m[i, j]), i, j) for i in range(m.shape[0]) for j in range(m.shape[1]) if i != j and m[i, j] > 0]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [(i, j, n) for n, i, j in cells[:k]]


def confused_pairs(
    y_true: Any, y_pred: Any, k: int = 10, num_classes: int | None = None, symmetric: bool = False
) -> list[tuple[int, int, int]]:
    """The k most frequent mistakes as (true, predicted, count), from the labels (no K x K matrix).

    Same order as `top_confusions` (count down, then (true, predicted)). `symmetric` merges a->b
    and b->a into one pair (a < b): the look-alike characters a model keeps mixing up.
    """
    t, p = _pair(y_true, y_pred)
    size = _num_classes(num_classes, t, p)
    wrong = t != p
    a, b = t[wrong], p[wrong]
    if symmetric:
        a, b = np.minimum(a, b), np.maximum(a, b)
    keys, counts = np.unique(a * size + b, return_counts=True)
    order = np.lexsort((keys, -counts))[:k]
    return [(int(keys[i] // size), int(keys[i] % size), int(counts[i])) for i in order]


def top_k_accuracy(y_true: Any, scores: Any, k: int = 5, chunk: int = 4096) -> float:
    """Share of samples whose true class is among the k highest scores (NaN for no samples)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    t, z = _per_sample_scores(y_true, scores, "scores", dtype=None)
    if not t.size:
        return float("nan")
    hits = 0
    for start in range(0, t.size, chunk):  # blocks: an (N, 3755) comparison at once would be GBs
        block, truth = z[start : start + chunk], t[start : start + chunk]
        true_score = block[np.arange(truth.size), truth]
        hits += int(((block > true_score[:, None]).sum(axis=1) < k).sum())
    return hits / t.size


def softmax(logits: Any) -> np.ndarray:
    z = _array(logits, float)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _per_sample_scores(y_true: Any, scores: Any, what: str, dtype=float) -> tuple[np.ndarray, np.ndarray]:
    """Labels and an (N, C) score array checked to match them (dtype None: as given, no copy)."""
    t = _labels(y_true, "y_true")
    z = _array(scores, dtype)
    if z.ndim != 2 or z.shape[0] != t.size:
        raise ValueError(f"{what} must have shape ({t.size}, C), got {z.shape}")
    return t, z


def log_loss(y_true: Any, probabilities: Any, eps: float = 1e-12) -> float:
    """Mean cross-entropy -log p[true] from class probabilities (clipped at eps)."""
    t, p = _per_sample_scores(y_true, probabilities, "probabilities")
    if not t.size:
        return float("nan")
    return float(-np.mean(np.log(np.clip(p[np.arange(t.size), t], eps, 1.0))))


def cross_entropy_from_logits(y_true: Any, logits: Any) -> float:
    """Mean cross-entropy from raw logits (log-softmax computed stably)."""
    t, z = _per_sample_scores(y_true, logits, "logits", dtype=None)
    if not t.size:
        return float("nan")
    losses = np.empty(t.size)
    for start in range(0, t.size, 4096):  # float64 in blocks: (N, 3755) at once would be GBs
        block = z[start : start + 4096].astype(float)
        m = block.max(axis=1, keepdims=True)
        log_norm = (m + np.log(np.exp(block - m).sum(axis=1, keepdims=True)))[:, 0]
        losses[start : start + 4096] = log_norm - block[np.arange(len(block)), t[start : start + 4096]]
    return float(np.mean(losses))


def max_softmax(logits: Any, chunk: int = 4096) -> np.ndarray:
    """The largest softmax probability of each row (the model's confidence), computed in blocks."""
    z = _array(logits)
    out = np.empty(len(z))
    for start in range(0, len(z), chunk):
        block = z[start : start + chunk].astype(float)
        out[start : start + chunk] = 1.0 / np.exp(block - block.max(axis=1, keepdims=True)).sum(axis=1)
    return out


def calibration_table(confidence: Any, correct: Any, bins: int = 15) -> list[dict[str, float]]:
    """Per equal-width bin: its edges, sample count, accuracy and mean confidence."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    c = _array(confidence, float)
    ok = _array(correct).astype(bool)
    if c.shape != ok.shape:
        raise ValueError("confidence and correct differ in shape")
    # (lo, hi] bins: ceil(c * B) - 1, so a confidence on an edge falls in the lower bin.
    # Rounding first keeps 0.7 * 10 = 7.000000000000001 on its edge.
    index = np.clip(np.ceil(np.round(c * bins, 9)).astype(int) - 1, 0, bins - 1)
    table = []
    for b in range(bins):
        members = index == b
        n = int(members.sum())
        table.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "n": n,
                "accuracy": float(ok[members].mean()) if n else None,
                "confidence": float(c[members].mean()) if n else None,
            }
        )
    return table


def expected_calibration_error(confidence: Any, correct: Any, bins: int = 15) -> float:
    """Sum over bins of (bin share) x |bin accuracy - bin mean confidence|."""
    table = calibration_table(confidence, correct, bins)
    total = sum(row["n"] for row in table)
    if not total:
        return float("nan")
    return float(sum(row["n"] / total * abs(row["accuracy"] - row["confidence"]) for row in table if row["n"]))


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion successes/n; (nan, nan) when n == 0."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The bounds are exactly 0 and 1 at the extremes; say so rather than leave 1e-17 residue.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return float(low), float(high)
