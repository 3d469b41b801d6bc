"""Model checkpoints: one dict that `torch.load(path, weights_only=True)` can read.

Format 1 (docs/architecture.md):
`{"format": 1, "model", "config", "input_size", "normalize": {"mean", "std"}, "characters",
"values", "start", "epoch", "val_accuracy", "state_dict", ...extra}`. Only tensors, numbers, strings,
bools, None, lists and dicts are stored, so loading never runs pickled code; `save` converts
numpy values, tuples and paths and refuses anything else, naming the field.
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
REQUIRED = ("format", "model", "config", "input_size", "normalize", "characters", "start", "epoch",
            "val_accuracy", "state_dict")
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
    raise TypeError(f"checkpoint field {where}: cannot store a {type(value).__name__} (only tensors, "
                    "numbers, strings, lists and dicts)")


def clean_state_dict(state_dict: dict) -> dict:
    """CPU tensors under the bare model's names (wrapper prefixes stripped)."""
    out = {}
    for key, tensor in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = tensor.detach().cpu() if isinstance(tensor, torch.Tensor) else _plain(tensor, f"state_dict.{key}")
    return out


def save(path: str | os.PathLike, *, model_name: str, config: dict, state_dict: dict, input_size: int,
         normalize: dict, classes: Classes, start: str, epoch: int, val_accuracy: float, **extra) -> Path:
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
        raise DataError(f"checkpoint {path} cannot be read (corrupt or not a weights-only torch file): "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if not isinstance(record, dict) or "format" not in record:
        raise DataError(f"checkpoint {path} is not an hccr checkpoint (no 'format' field)")
    if record["format"] != FORMAT:
        raise DataError(f"checkpoint {path} has format {record['format']!r}; this hccr reads format {FORMAT}")
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise DataError(f"checkpoint {path} lacks fields {missing}")
    Classes.from_meta(record, f"checkpoint {path}")  # a readable class list, or a DataError naming the file
    return record


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the checkpoint's model (no pretrained download) and load its weights strictly.

    Returns (model in eval mode on `map_location`, meta): meta is every field but `state_dict`.
    """
    from hccr.models import create

    record = load(path, map_location=map_location)
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
