"""Predict-path views: each archive glyph as `hccr predict` would see it in a user's file.

    python -m hccr.data.views --images data/processed/images_64.npy --size 64 --filter bilinear \
        --settings-json '{...params views block...}' --out data/processed/views_64.npy \
        --summary data/processed/views_64.json [--workers 2] [--framing cell|ink_box]

A model trained only on the archive's files meets a user's scan after `canonical_glyph` has
inverted it, removed the paper, framed it and rescaled its strokes: an input it never saw
(issue 14: 2-8 points lost on JPEG, shifted and textured images). So every glyph of the
array gets one *view*: a user-style file (`hccr.evaluation.transforms`: inverted, enlarged
RGB, shifted and padded, JPEG, textured paper) whose family and settings are drawn from the
ranges of params `views` (never the robustness evaluation's fixed settings), decoded and
framed by predict's own functions, then resized to the model's input size exactly as the
resize step resizes the files. The training loader swaps an image for its view with
probability `augment.views` (hccr.training.loader), so a model learns both forms.

Each view is deterministic from (`views.seed`, row), whatever the number of workers. A view
predict refuses (no ink left) keeps the original glyph; the summary lists those rows.
`--framing`: the framing of the model that trains on them (model block `framing`;
`ink_box` models train on data/processed/ink_box/views_S.npy).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from hccr.atomic import atomic_path, write_json
from hccr.config import checked_part, json_object_arg
from hccr.data.arrays import load_images
from hccr.data.workers import map_row_chunks
from hccr.errors import ConfigError, DataError, reports_errors
from hccr.evaluation.transforms import FUNCTIONS
from hccr.serving.preprocess import (
    DEFAULT_FRAMING,
    FRAMINGS,
    Framing,
    canonical_glyph,
    framing_named,
    glyph_to_size,
    open_image,
)

FAMILIES = ("inverted", "enlarged", "shifted", "jpeg", "textured")
CHUNK = 500  # rows per worker task


@dataclass(frozen=True)
class ViewSettings:
    """The `views:` params block: which families, and the range each setting is drawn from."""

    seed: int = 0
    families: tuple[tuple[str, float], ...] = tuple((name, 1.0) for name in FAMILIES)  # (family, weight)
    enlarged_size: tuple[int, int] = (96, 320)
    enlarged_filters: tuple[str, ...] = ("bilinear", "bicubic", "lanczos")
    shifted_pad: tuple[int, int] = (4, 24)
    jpeg_quality: tuple[int, int] = (30, 90)
    textured_level: tuple[float, float] = (170.0, 240.0)
    textured_amplitude: tuple[float, float] = (5.0, 35.0)
    textured_grain: tuple[int, int] = (4, 16)

    @classmethod
    def from_dict(cls, spec: Mapping | None) -> ViewSettings:
        """From a `views:` mapping, checked against the schema's `views` definition."""
        filled = checked_part("views", dict(spec or {}), "views")
        for key, value in filled.items():
            if key.endswith(("_size", "_pad", "_quality", "_level", "_amplitude", "_grain")) and value[0] > value[1]:
                raise ConfigError(f"views.{key}: [low, high] with low <= high, not {list(value)}")
        weights = filled.pop("families")  # in FAMILIES order, so the draws do not depend on the YAML's order
        families = tuple((name, float(weights[name])) for name in FAMILIES if weights.get(name, 0) > 0)
        if not families:
            raise ConfigError("views.families: every weight is 0; give at least one family a positive weight")
        return cls(families=families, **{k: tuple(v) if isinstance(v, list) else v for k, v in filled.items()})

    @property
    def probabilities(self) -> np.ndarray:
        weights = np.array([weight for _, weight in self.families], dtype=float)
        return weights / weights.sum()


def draw(settings: ViewSettings, row: int) -> tuple[str, dict]:
    """The family and settings of row `row`'s view (from its own generator)."""
    rng = np.random.default_rng([settings.seed, row])
    family = settings.families[int(rng.choice(len(settings.families), p=settings.probabilities))][0]
    if family == "enlarged":
        filters = settings.enlarged_filters
        return family, {
            "size": int(rng.integers(settings.enlarged_size[0], settings.enlarged_size[1] + 1)),
            "invert": bool(rng.integers(2)),
            "filter": filters[int(rng.integers(len(filters)))],
        }
    if family == "shifted":
        pad = int(rng.integers(settings.shifted_pad[0], settings.shifted_pad[1] + 1))
        return family, {"pad": pad, "shift": tuple(int(v) for v in rng.integers(-pad, pad + 1, size=2))}
    if family == "jpeg":
        return family, {"quality": int(rng.integers(settings.jpeg_quality[0], settings.jpeg_quality[1] + 1))}
    if family == "textured":
        return family, {
            "level": float(rng.uniform(*settings.textured_level)),
            "amplitude": float(rng.uniform(*settings.textured_amplitude)),
            "grain": int(rng.integers(settings.textured_grain[0], settings.textured_grain[1] + 1)),
        }
    return family, {}


def view(
    glyph: np.ndarray,
    row: int,
    settings: ViewSettings,
    size: int,
    resize_filter: str,
    framing: Framing = DEFAULT_FRAMING,
) -> tuple[np.ndarray, str]:
    """(the view at `size` px, its family); the glyph itself, family `kept`, if predict refuses it.

    `framing`: predict's cell framing (the default), or the one the model is trained and used
    with (FRAMINGS).
    """
    family, options = draw(settings, row)
    data = FUNCTIONS[family](glyph, settings.seed * 1_000_003 + row, **options)
    try:
        framed = canonical_glyph(open_image(data, f"view {row}"), f"view {row}", framing)
    except DataError:
        framed, family = glyph, "kept"
    return glyph_to_size(framed, size, resize_filter), family


def _render_chunk(job: tuple[str, int, int, ViewSettings, int, str, Framing]) -> tuple[np.ndarray, list[str]]:
    path, start, stop, settings, size, resize_filter, framing = job
    glyphs = load_images(path)[start:stop]
    out = np.empty((stop - start, size, size), dtype=np.uint8)
    families = []
    for offset, glyph in enumerate(glyphs):
        out[offset], family = view(np.asarray(glyph), start + offset, settings, size, resize_filter, framing)
        families.append(family)
    return out, families


def render_views(
    images_path: str,
    settings: ViewSettings,
    size: int,
    resize_filter: str = "bilinear",
    workers: int | None = None,
    progress: bool = True,
    framing: Framing = DEFAULT_FRAMING,
) -> tuple[np.ndarray, list[str]]:
    """(views uint8 (N, size, size), family per row) for the native 64-px array at `images_path`."""
    images = load_images(images_path)
    if images.shape[1:] != (64, 64):
        raise DataError(f"{images_path}: views are made from the native 64 px array, got {images.shape[1:]}")
    extra = (settings, size, resize_filter, framing)
    return map_row_chunks(
        _render_chunk, images_path, len(images), size, extra, CHUNK, workers, "predict-path views", progress
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hccr views", description=__doc__.split("\n\n")[1].strip())
    p.add_argument("--images", required=True, help="data/processed/images_64.npy (native glyphs)")
    p.add_argument("--size", type=int, required=True, help="the training input size (px)")
    p.add_argument("--filter", default="bilinear", help="params resize.filter (64 -> size)")
    p.add_argument("--settings-json", default="{}", help="params.yaml's views block (inline JSON or a file)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    p.add_argument("--out", required=True, help="output .npy (N, size, size) uint8, row-aligned with --images")
    p.add_argument("--summary", required=True, help="output JSON: settings, views per family, kept rows")
    p.add_argument("--framing", choices=list(FRAMINGS), default="cell", help="the model's framing (default cell)")
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = ViewSettings.from_dict(json_object_arg(args.settings_json, "--settings-json"))
    began = time.perf_counter()
    framing = framing_named(args.framing, "--framing")
    views, families = render_views(args.images, settings, args.size, args.filter, args.workers, framing=framing)
    with atomic_path(args.out, suffix=".npy") as tmp:
        np.save(tmp, views)
    summary = {
        "images": len(views),
        "size": args.size,
        "filter": args.filter,
        "framing": args.framing,
        "settings": asdict(settings),
        "families": dict(sorted(Counter(families).items())),
        "kept_rows": [row for row, family in enumerate(families) if family == "kept"],
        "seconds": round(time.perf_counter() - began, 2),
    }
    write_json(args.summary, summary)
    print(f"{args.out}: {views.shape}, {summary['families']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
