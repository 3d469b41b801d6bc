"""The archive framed as another model is used: every glyph through predict's framing code.

    python -m hccr.data.reframe --images data/processed/images_64.npy --framing ink_box \
        --size 64 --filter bilinear --out data/processed/ink_box/images_64.npy \
        --summary data/processed/ink_box/images_64.json [--workers 2]

A model whose block says `framing: ink_box` is used on every file cropped to its ink box
(hccr.serving.preprocess.FRAMINGS), so it must train and be scored on the archive framed the
same way: this step passes each native 64-px glyph through `canonical_glyph` with that
framing, then resizes it to the model's input size as the resize step does. The output is
row-aligned with the input. A glyph the framing refuses (no ink) is kept as it is; the
summary lists those rows.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from PIL import Image

from hccr.atomic import atomic_path, write_json
from hccr.data.arrays import load_images
from hccr.data.workers import map_row_chunks
from hccr.errors import DataError, reports_errors
from hccr.serving.preprocess import FRAMINGS, canonical_glyph, framing_named, glyph_to_size

CHUNK = 1000  # rows per worker task


def reframe_glyph(glyph: np.ndarray, framing: str, size: int, resize_filter: str, label: str) -> np.ndarray | None:
    """One native glyph framed by `framing` at `size` px; None if the framing refuses it."""
    try:
        framed = canonical_glyph(Image.fromarray(np.asarray(glyph, dtype=np.uint8)), label, framing_named(framing))
    except DataError:
        return None
    return glyph_to_size(framed, size, resize_filter)


def _reframe_chunk(job: tuple[str, int, int, str, int, str]) -> tuple[np.ndarray, list[int]]:
    path, start, stop, framing, size, resize_filter = job
    glyphs = load_images(path)[start:stop]
    out = np.empty((stop - start, size, size), dtype=np.uint8)
    refused = []
    for offset, glyph in enumerate(glyphs):
        framed = reframe_glyph(glyph, framing, size, resize_filter, f"{path} row {start + offset}")
        if framed is None:  # no ink: kept as it is, and listed
            framed = glyph_to_size(np.asarray(glyph), size, resize_filter)
            refused.append(start + offset)
        out[offset] = framed
    return out, refused


def reframe_archive(
    images_path: str, framing: str, size: int, resize_filter: str = "bilinear", workers: int | None = None
) -> tuple[np.ndarray, list[int]]:
    """(the native 64-px array at `images_path` framed by `framing` at `size` px, rows it refused)."""
    framing_named(framing, "--framing")
    images = load_images(images_path)
    if images.shape[1:] != (64, 64):
        raise DataError(f"{images_path}: reframing starts from the native 64 px array, got {images.shape[1:]}")
    extra = (framing, size, resize_filter)
    desc = f"framing by {framing}"
    return map_row_chunks(_reframe_chunk, images_path, len(images), size, extra, CHUNK, workers, desc)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hccr reframe", description=__doc__.split("\n\n")[1].strip())
    p.add_argument("--images", required=True, help="data/processed/images_64.npy (native glyphs)")
    p.add_argument("--framing", required=True, choices=list(FRAMINGS), help="the model block's framing")
    p.add_argument("--size", type=int, required=True, help="the model's input size (px)")
    p.add_argument("--filter", default="bilinear", help="params resize.filter (64 -> size)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    p.add_argument("--out", required=True, help="output .npy (N, size, size) uint8, row-aligned with --images")
    p.add_argument("--summary", required=True, help="output JSON: framing, size, refused rows, seconds")
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    began = time.perf_counter()
    framed, refused = reframe_archive(args.images, args.framing, args.size, args.filter, args.workers)
    with atomic_path(args.out, suffix=".npy") as tmp:
        np.save(tmp, framed)
    summary = {
        "images": len(framed),
        "framing": args.framing,
        "size": args.size,
        "filter": args.filter,
        "refused_rows": refused,
        "seconds": round(time.perf_counter() - began, 2),
    }
    write_json(args.summary, summary)
    print(f"{args.out}: {framed.shape} framed by {args.framing}, {len(refused)} refused (kept)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
