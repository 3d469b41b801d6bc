"""How the report and the model card write numbers and name protocols, so both say the same thing the same way."""

from __future__ import annotations

import math
from typing import Any

DASH = "—"  # a value that is missing or undefined

PROTOCOLS = {
    "writer": (
        "**writer** protocol: whole writers are held out. Test writers and validation writers "
        "never appear in training, so the test accuracy measures recognition of new people's handwriting."
    ),
    "paper": (
        "**paper** protocol (the study's): random splits, writers shared between training and "
        "validation, no test set. Validation accuracy is optimistic for new writers."
    ),
}


def is_number(x: Any) -> bool:
    try:
        return x is not None and not math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def pct(x: Any, digits: int = 2) -> str:
    return f"{100 * float(x):.{digits}f} %" if is_number(x) else DASH


def num(x: Any, digits: int = 4) -> str:
    return f"{float(x):.{digits}f}" if is_number(x) else DASH


def integer(x: Any) -> str:
    return f"{int(x):,}" if is_number(x) else DASH


def pp(x: Any) -> str:
    return f"{100 * float(x):+.2f} pp" if is_number(x) else DASH


def seconds(x: Any) -> str:
    if not is_number(x):
        return DASH
    s = float(x)
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.2f} h"


def ci(block: dict | None) -> str:
    if not block or not is_number(block.get("accuracy_ci_low")):
        return DASH
    return f"[{pct(block['accuracy_ci_low'])}, {pct(block['accuracy_ci_high'])}]"


def general(x: Any, digits: int = 4) -> str:
    """A number in `digits` significant figures (learning rates, losses of any scale)."""
    return f"{float(x):.{digits}g}" if is_number(x) else DASH
