"""What an exported ONNX model carries about itself (`hccr.*` metadata_props) and how to read it back.

`hccr.serving.export` writes these entries; `hccr.serving.predict` (and the web app) read them,
so neither needs the other: input size, normalisation, the class list with its values, the
resize filter, the framing of each input channel, model name, start and epoch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from hccr.classes import Classes
from hccr.errors import HccrError

META_PREFIX = "hccr."
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


def _values(props: Mapping[str, str], label: str) -> list | None:
    text = props.get(f"{META_PREFIX}values")
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise HccrError(f"{label}: malformed hccr.values metadata ({exc})") from None


def metadata_props(meta: Mapping[str, Any], resize_filter: str) -> dict[str, str]:
    """`hccr.*` string entries for the ONNX model's metadata_props."""
    from hccr.models.ensemble import member_framings

    normalize = meta["normalize"]
    classes = Classes.from_meta(meta, "checkpoint")
    framings = member_framings(meta)
    return {
        f"{META_PREFIX}format": "1",
        f"{META_PREFIX}model": str(meta["model"]),
        f"{META_PREFIX}input_size": str(int(meta["input_size"])),
        f"{META_PREFIX}mean": repr(float(normalize["mean"])),
        f"{META_PREFIX}std": repr(float(normalize["std"])),
        f"{META_PREFIX}characters": classes.text,
        f"{META_PREFIX}values": json.dumps(list(classes.values)),
        f"{META_PREFIX}resize_filter": str(resize_filter),
        f"{META_PREFIX}framings": ",".join(framings),
        f"{META_PREFIX}input": (
            f"image (B, {len(framings)}, S, S) float32 = ((uint8 / 255) - mean) / std, light strokes on black; "
            "channel m is the file framed by hccr.framings[m]"
        ),
        f"{META_PREFIX}output": OUTPUT_NAME,
        f"{META_PREFIX}start": str(meta.get("start", "")),
        f"{META_PREFIX}epoch": str(meta.get("epoch", "")),
        f"{META_PREFIX}val_accuracy": repr(float(meta.get("val_accuracy", math.nan))),
    }


def metadata_from_props(props: Mapping[str, str], label: str = "model.onnx") -> dict[str, Any]:
    """Read back what `metadata_props` wrote; HccrError naming `label` if keys are missing."""
    needed = ("input_size", "mean", "std", "characters")
    missing = [k for k in needed if f"{META_PREFIX}{k}" not in props]
    if missing:
        raise HccrError(
            f"{label}: ONNX file lacks hccr metadata ({', '.join(META_PREFIX + k for k in missing)}); "
            "export it with `hccr export`"
        )
    try:
        return {
            "input_size": int(props[f"{META_PREFIX}input_size"]),
            "mean": float(props[f"{META_PREFIX}mean"]),
            "std": float(props[f"{META_PREFIX}std"]),
            "classes": Classes.from_meta(
                {"characters": props[f"{META_PREFIX}characters"], "values": _values(props, label)}, label
            ),
            "resize_filter": props.get(f"{META_PREFIX}resize_filter", "bilinear"),
            # Files exported before framings existed have one cell-framed input.
            "framings": props.get(f"{META_PREFIX}framings", "cell").split(","),
            "output": props.get(f"{META_PREFIX}output", OUTPUT_NAME),
            "model": props.get(f"{META_PREFIX}model"),
            "start": props.get(f"{META_PREFIX}start"),
        }
    except ValueError as exc:
        raise HccrError(f"{label}: malformed hccr metadata ({exc})") from None
