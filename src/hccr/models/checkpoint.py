"""Model checkpoints: one dict that `torch.load(path, weights_only=True)` can read.

Format 1 (docs/architecture.md):
`{"format": 1, "model", "config", "input_size", "normalize": {"mean", "std"}, "characters",
"values", "start", "epoch", "val_accuracy", "state_dict", ...extra}`. Only tensors, numbers, strings,
bools, None, lists and dicts are stored, so loading never runs pickled code; `save` converts
numpy values, tuples and paths and refuses anything else, naming the field.

A checkpoint may come from elsewhere, so `load` checks the metadata's types and bounds
(`check_meta`) and `load_model` builds the declared model on PyTorch's `meta` device first
(no memory) and compares its parameter shapes with the stored weights before building it for
real: a file declaring a 60,000-channel network, a 200,000 px input or std 0 is refused with
a DataError instead of allocating 130 GB or printing NaN confidences.
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from torch import nn

from hccr.atomic import atomic_path
from hccr.classes import Classes
from hccr.errors import DataError, HccrError

FORMAT = 1
REQUIRED = (
    "format",
    "model",
    "config",
    "input_size",
    "normalize",
    "characters",
    "start",
    "epoch",
    "val_accuracy",
    "state_dict",
)
# Input sizes a checkpoint may declare: the resize step and predict allocate S x S per image.
INPUT_SIZE_RANGE = (8, 1024)
# Wrappers add these to parameter names (DistributedDataParallel, torch.compile).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _plain(value: Any, where: str) -> Any:
    """`value` as types weights_only loading accepts."""
    if isinstance(value, np.generic):  # before the plain types: np.float64 is a float subclass
        return value.item()
    if value is None or type(value) in (bool, int, float, str):
        return value
    for plain in (bool, int, float, str):  # subclasses (enums, ...) pickle as their class
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not isinstance(key, (str, int)):
                key = str(key)
            out[key] = _plain(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return [_plain(item, f"{where}[]") for item in sorted(value)]
    raise TypeError(
        f"checkpoint field {where}: cannot store a {type(value).__name__} (only tensors, "
        "numbers, strings, lists and dicts)"
    )


def clean_state_dict(state_dict: dict) -> dict:
    """CPU tensors under the bare model's names (wrapper prefixes stripped)."""
    out = {}
    for key, tensor in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = tensor.detach().cpu() if isinstance(tensor, torch.Tensor) else _plain(tensor, f"state_dict.{key}")
    return out


def save(
    path: str | os.PathLike,
    *,
    model_name: str,
    config: dict,
    state_dict: dict,
    input_size: int,
    normalize: dict,
    classes: Classes,
    start: str,
    epoch: int,
    val_accuracy: float,
    **extra,
) -> Path:
    """Write a format-1 checkpoint atomically; `extra` fields (e.g. optimizer state) go in too."""
    clash = set(extra) & (set(REQUIRED) | {"values"})
    if clash:
        raise TypeError(f"checkpoint.save: extra fields clash with format fields: {sorted(clash)}")
    if isinstance(state_dict, nn.Module):
        state_dict = state_dict.state_dict()
    record = {
        "format": FORMAT,
        "model": str(model_name),
        "config": _plain(config, "config"),
        "input_size": int(input_size),
        "normalize": {"mean": float(normalize["mean"]), "std": float(normalize["std"])},
        "characters": classes.text,  # the class list travels with the weights
        "values": list(classes.values),
        "start": str(start),
        "epoch": int(epoch),
        "val_accuracy": float(val_accuracy) if val_accuracy is not None else math.nan,
        "state_dict": clean_state_dict(state_dict),
    }
    for key, value in extra.items():
        record[key] = _plain(value, key)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(record, tmp)
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with weights_only=True; DataError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise DataError(
            f"checkpoint {path} cannot be read (corrupt or not a weights-only torch file): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    if not isinstance(record, dict) or "format" not in record:
        raise DataError(f"checkpoint {path} is not an hccr checkpoint (no 'format' field)")
    if record["format"] != FORMAT:
        raise DataError(f"checkpoint {path} has format {record['format']!r}; this hccr reads format {FORMAT}")
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise DataError(f"checkpoint {path} lacks fields {missing}")
    Classes.from_meta(record, f"checkpoint {path}")  # a readable class list, or a DataError naming the file
    check_meta(record, path)
    return record


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_meta(record: dict, path: str | os.PathLike) -> None:
    """Types and bounds of the fields a reader acts on; DataError naming the field."""
    from hccr.data.resize import FILTERS

    def bad(field: str, value: Any, expected: str) -> DataError:
        return DataError(f"checkpoint {path}: field {field} is {value!r}; expected {expected}")

    if not isinstance(record["model"], str):
        raise bad("model", record["model"], "a model name")
    if not isinstance(record["config"], dict):
        raise bad("config", type(record["config"]).__name__, "a mapping of model settings")
    low, high = INPUT_SIZE_RANGE
    if not _is_int(record["input_size"]) or not low <= record["input_size"] <= high:
        raise bad("input_size", record["input_size"], f"an integer from {low} to {high}")
    normalize = record["normalize"]
    if not isinstance(normalize, dict):
        raise bad("normalize", normalize, "a mapping with mean and std")
    if not _is_number(normalize.get("mean")) or abs(normalize["mean"]) > 255:
        raise bad("normalize.mean", normalize.get("mean"), "a finite number")
    if not _is_number(normalize.get("std")) or not 1e-6 <= normalize["std"] <= 255:
        raise bad("normalize.std", normalize.get("std"), "a positive finite number (inputs are divided by it)")
    if "resize_filter" in record and str(record["resize_filter"]).lower() not in FILTERS:
        raise bad("resize_filter", record["resize_filter"], f"one of {', '.join(FILTERS)}")
    if not _is_int(record["epoch"]) or record["epoch"] < 0:
        raise bad("epoch", record["epoch"], "a non-negative integer")
    state = record["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise bad("state_dict", type(state).__name__, "a mapping of parameter names to tensors")


def check_fits(record: dict, path: str | os.PathLike) -> None:
    """Build the declared model without memory (meta device) and compare it with the weights."""
    from hccr.models import REGISTRY, create

    name = record["model"]
    # A params block may build another block's network (`network: efficientnet` for efficientnet_scratch).
    network = record["config"].get("network", name) if isinstance(record["config"], dict) else name
    if network not in REGISTRY:
        raise DataError(
            f"checkpoint {path}: unknown network {network!r}; known networks: {', '.join(sorted(REGISTRY))}"
        )
    try:
        with torch.device("meta"):
            classes = Classes.from_meta(record, f"checkpoint {path}")
            skeleton, _ = create(name, record["config"], pretrained="none", num_classes=len(classes))
    except HccrError as exc:
        raise DataError(f"checkpoint {path}: cannot rebuild model {name!r}: {exc}") from exc
    except Exception as exc:  # a hostile config can trip the builders in many ways
        raise DataError(
            f"checkpoint {path}: config does not describe a buildable {name!r} ({type(exc).__name__}: {exc})"
        ) from None
    expected = {key: tuple(value.shape) for key, value in skeleton.state_dict().items()}
    stored = {key: tuple(value.shape) for key, value in record["state_dict"].items()}
    for key in sorted(set(expected) | set(stored)):
        if expected.get(key) != stored.get(key):
            raise DataError(
                f"checkpoint {path}: weights do not fit the {name!r} its config describes: parameter {key} "
                f"is {expected.get(key, 'absent')} in the model but {stored.get(key, 'absent')} in the file"
            )


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the checkpoint's model (no pretrained download) and load its weights strictly.

    Returns (model in eval mode on `map_location`, meta): meta is every field but `state_dict`.
    """
    from hccr.models import create

    record = load(path, map_location=map_location)
    check_fits(record, path)
    try:
        classes = Classes.from_meta(record, f"checkpoint {path}")
        model, _ = create(record["model"], record["config"], pretrained="none", num_classes=len(classes))
    except HccrError as exc:
        raise DataError(f"checkpoint {path}: cannot rebuild model {record['model']!r}: {exc}") from exc
    try:
        model.load_state_dict(record["state_dict"], strict=True)
    except RuntimeError as exc:
        raise DataError(f"checkpoint {path}: weights do not fit model {record['model']!r}: {exc}") from exc
    meta = {key: value for key, value in record.items() if key != "state_dict"}
    return model.to(map_location).eval(), meta
