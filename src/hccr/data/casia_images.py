"""Fit variable-size CASIA-HWDB records into squares, streaming them into one memory-mapped array.

A record (dark ink on white, any width x height) becomes an S x S uint8 image in the
pipeline's convention (light ink on black, as Chinese MNIST): inverted, scaled so that its
longer side fills the square less a margin on each edge (aspect kept, up or down with the
chosen Pillow filter), centred, and padded with black. `write_images` walks each source file
once, in order, on a small process pool (one file per job); each worker writes its rows
straight into the `.npy` memory map, so no more than one record and one block of fitted rows
per worker is ever in memory, whatever the corpus size.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from hccr.data.casia import GntFile, tag_code
from hccr.errors import ConfigError, DataError

BLOCK = 1024  # fitted rows buffered per worker before they are written into the memory map


def margin_pixels(size: int, margin: float) -> int:
    """Blank pixels left on each edge of an S-pixel square for a `margin` share of the side."""
    if not 0 <= margin < 0.5:
        raise ConfigError(f"casia.margin: must be in [0, 0.5), got {margin}")
    pixels = int(round(size * margin))
    if size - 2 * pixels < 1:
        raise ConfigError(f"casia.margin: {margin} leaves no room in a {size}-pixel square")
    return pixels


def fit_square(image: np.ndarray, size: int, margin: int, resample: Image.Resampling) -> np.ndarray:
    """One (h, w) dark-on-white record as a (size, size) light-on-black image, aspect kept."""
    inner = size - 2 * margin
    fitted = ImageOps.contain(Image.fromarray(255 - image, mode="L"), (inner, inner), method=resample)
    out = np.zeros((size, size), dtype=np.uint8)
    top = margin + (inner - fitted.height) // 2
    left = margin + (inner - fitted.width) // 2
    out[top : top + fitted.height, left : left + fitted.width] = np.asarray(fitted)
    return out


@dataclass
class FileJob:
    """The rows of one source file to fit: their ids in the output and where the records start."""

    file: GntFile
    ids: np.ndarray
    offsets: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    codes: np.ndarray


def fit_file(job: FileJob, out_path: str, size: int, margin: int, resample: Image.Resampling) -> int:
    """Fit every wanted record of one file into rows `job.ids` of the `.npy` at `out_path`."""
    out = np.load(out_path, mmap_mode="r+")
    block = np.empty((min(BLOCK, len(job.ids)), size, size), dtype=np.uint8)
    filled = start = k = 0
    for record in job.file.records(pixels=True):
        if k == len(job.ids):
            break
        if record.offset != job.offsets[k]:
            continue  # a record outside the label set
        expected = (int(job.widths[k]), int(job.heights[k]), int(job.codes[k]))
        if (record.width, record.height, tag_code(record.tag)) != expected:
            raise DataError(
                f"{job.file.name}: record at byte offset {record.offset} is {record.width}x{record.height} "
                f"tag 0x{record.tag.hex().upper()}, the index says {expected[0]}x{expected[1]} tag 0x{expected[2]:04X} "
                "(the source changed since indexing: rerun fetch and index)"
            )
        block[filled] = fit_square(record.image(), size, margin, resample)
        filled += 1
        k += 1
        if filled == len(block):
            out[job.ids[start : start + filled]] = block[:filled]
            start, filled = start + filled, 0
    if k < len(job.ids):
        raise DataError(
            f"{job.file.name}: no record starts at byte offset {int(job.offsets[k])}, which the index lists "
            "(the source changed since indexing: rerun fetch and index)"
        )
    out[job.ids[start : start + filled]] = block[:filled]
    out.flush()
    del out
    return len(job.ids)


def _run(args: tuple) -> int:
    return fit_file(*args)


def write_images(
    jobs: list[FileJob],
    rows: int,
    size: int,
    margin: int,
    resample: Image.Resampling,
    out_path: str | os.PathLike,
    workers: int = 1,
    progress: bool = True,
) -> None:
    """Create the (rows, size, size) uint8 `.npy` at `out_path` and fill it file by file (not atomic by itself)."""
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8, shape=(rows, size, size))
    out.flush()
    del out
    tasks = [(job, str(out_path), size, margin, resample) for job in jobs]
    bar = tqdm(total=rows, desc=f"fit {size}", unit="img", file=sys.stderr, disable=not progress)
    try:
        if workers <= 1 or len(tasks) <= 1:
            for done in map(_run, tasks):
                bar.update(done)
        else:
            with ProcessPoolExecutor(workers) as pool:
                for done in pool.map(_run, tasks):
                    bar.update(done)
    finally:
        bar.close()
