"""The facts `GET /api/model` shows: what the model card says about the served model.

From the model file itself: model name, start (scratch / imagenet / file), input size,
epoch, validation accuracy, characters, the file's size and format. From the files `hccr
export` writes beside it (`parity.json`): the data subset (`size`). From the run's metrics
(`--metrics FILE`, else `reports/metrics/{model}/{size}.json` when it exists): the test
accuracy; an exported ensemble has no run of its own, so its test accuracy is parity.json's
(the export scores it on every test image). A fact that none of these holds is `null`, never
guessed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _integer(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _test_accuracy(metrics: dict | None) -> float | None:
    test = (metrics or {}).get("test")
    return _number(test.get("accuracy")) if isinstance(test, dict) else None


def model_facts(
    predictor, metrics_path: str | Path | None = None, metrics_root: str | Path = "reports/metrics"
) -> dict:
    """The served model's card facts as a JSON-ready dict (see module doc)."""
    meta = predictor.meta
    path = Path(predictor.path)
    parity = _read_json(path.parent / "parity.json") or {}
    model = meta.get("model") or parity.get("model")
    size = meta.get("size") or parity.get("size")
    metrics = None
    if metrics_path is not None:
        metrics = _read_json(Path(metrics_path))
        metrics_source = str(metrics_path) if metrics is not None else None
    elif model and size:
        guess = Path(metrics_root) / str(model) / f"{size}.json"
        metrics = _read_json(guess)
        metrics_source = str(guess) if metrics is not None else None
    else:
        metrics_source = None
    size = size or (metrics or {}).get("size")
    test_accuracy = _test_accuracy(metrics)
    if metrics is None and _number(parity.get("test_accuracy")) is not None:
        test_accuracy, metrics_source = _number(parity["test_accuracy"]), str(path.parent / "parity.json")
    return {
        "model": model,
        "size": size,
        "start": meta.get("start") or None,
        "test_accuracy": test_accuracy,
        "val_accuracy": _number(meta.get("val_accuracy")),
        "epoch": _integer(meta.get("epoch")),
        "input_size": predictor.input_size,
        "framings": list(predictor.framing_names),
        "resize_filter": predictor.resize_filter,
        "characters": predictor.classes.text,
        "values": list(predictor.classes.values),
        "file": path.name,
        "format": "onnx" if path.suffix.lower() == ".onnx" else "pytorch",
        "file_bytes": path.stat().st_size if path.is_file() else None,
        "metrics_file": metrics_source,
    }
