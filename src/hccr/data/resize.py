"""Decode every image once into one uint8 array per input size.

`python -m hccr.data.resize --raw data/raw/chinese-mnist --index data/interim/index.csv --size S
--filter bilinear --out data/processed/images_S.npy [--workers 2]`

The output is a `.npy` array of shape (N, S, S), dtype uint8, row i = index id i (the index
order). Size 64 is the native JPEG decoded unchanged. Any other size is resized from the native
64x64 image with Pillow's `Image.resize` and the named filter:

- `nearest`  Image.Resampling.NEAREST
- `bilinear` Image.Resampling.BILINEAR (params.yaml default)
- `bicubic`  Image.Resampling.BICUBIC
- `lanczos`  Image.Resampling.LANCZOS

Pillow's resampling is deterministic, so the same inputs give the same bytes. Decoding and
resizing run in chunks over a small process pool; resized chunks are written by the workers
straight into a memory-mapped output file, so a 13,500 x 299 x 299 array (1.2 GB) never has to
sit in memory twice. The file is written under a temporary name and renamed on success.
Read it back with `hccr.data.arrays.load_images(path)` (a read-only memory map).
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from hccr.atomic import atomic_path
from hccr.data.index import read_index
from hccr.data.layout import IMAGE_SIZE, decode_image
from hccr.data.workers import default_workers
from hccr.errors import ConfigError, DataError, reports_errors

NATIVE_SIZE = IMAGE_SIZE
FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
DECODE_CHUNK = 1000
RESIZE_CHUNK = 250


def resampling(name: str) -> Image.Resampling:
    try:
        return FILTERS[name]
    except KeyError:
        raise ConfigError(f"resize.filter: unknown filter {name!r}; choose from {', '.join(FILTERS)}") from None


def _decode_chunk(paths: list[str]) -> np.ndarray:
    return np.stack([np.asarray(decode_image(p)) for p in paths])


def _run_chunks(function, jobs: list, workers: int, desc: str, sizes: list[int], progress: bool):
    """Run `function` over `jobs` (in order) on `workers` processes, yielding results in order."""
    bar = tqdm(total=sum(sizes), desc=desc, unit="img", file=sys.stderr, disable=not progress)
    try:
        if workers <= 1 or len(jobs) <= 1:
            results = map(function, jobs)
            for result, n in zip(results, sizes, strict=False):
                bar.update(n)
                yield result
        else:
            with ProcessPoolExecutor(workers) as pool:
                for result, n in zip(pool.map(function, jobs), sizes, strict=False):
                    bar.update(n)
                    yield result
    finally:
        bar.close()


def decode_native(paths: list[str | os.PathLike], workers: int | None = None, progress: bool = True) -> np.ndarray:
    """Decode 64x64 grayscale JPEGs, in order, into one (N, 64, 64) uint8 array."""
    workers = default_workers() if workers is None else max(1, workers)
    strings = [str(p) for p in paths]
    if not strings:
        return np.zeros((0, NATIVE_SIZE, NATIVE_SIZE), dtype=np.uint8)
    chunks = [strings[i : i + DECODE_CHUNK] for i in range(0, len(strings), DECODE_CHUNK)]
    parts = list(_run_chunks(_decode_chunk, chunks, workers, "decode", [len(c) for c in chunks], progress))
    return np.concatenate(parts)


def _resize_into(job: tuple[str, int, np.ndarray, int, str]) -> int:
    """Resize one chunk and write it into rows [start, start + len) of the memory-mapped output."""
    out_path, start, chunk, size, filter_name = job
    method = FILTERS[filter_name]
    out = np.load(out_path, mmap_mode="r+")
    for offset, image in enumerate(chunk):
        out[start + offset] = np.asarray(Image.fromarray(image, mode="L").resize((size, size), method))
    out.flush()
    del out
    return len(chunk)


def resize_to_file(
    native: np.ndarray,
    size: int,
    filter_name: str,
    out_path: str | os.PathLike,
    workers: int | None = None,
    progress: bool = True,
) -> None:
    """Write `native` resized to (N, size, size) into a new .npy at `out_path` (not atomic by itself)."""
    resampling(filter_name)
    workers = default_workers() if workers is None else max(1, workers)
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8, shape=(len(native), size, size))
    if size == NATIVE_SIZE:
        out[:] = native  # native: copied unchanged, never resampled
        out.flush()
        del out
        return
    out.flush()
    del out
    jobs = [
        (str(out_path), i, native[i : i + RESIZE_CHUNK], size, filter_name) for i in range(0, len(native), RESIZE_CHUNK)
    ]
    for _ in _run_chunks(_resize_into, jobs, workers, f"resize {size}", [len(j[2]) for j in jobs], progress):
        pass


def make_images(
    raw: str | os.PathLike,
    index: str | os.PathLike,
    size: int,
    filter_name: str,
    out: str | os.PathLike,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[int, int, int]:
    """Decode the index's images from `raw` and write the (N, size, size) array atomically; return its shape."""
    if size < 1:
        raise ConfigError(f"resize.sizes: size {size} must be a positive integer")
    resampling(filter_name)
    raw = Path(raw)
    table = read_index(index)
    paths = [raw / p for p in table["path"]]
    missing = next((p for p in paths if not p.is_file()), None)
    if missing is not None:
        raise DataError(f"{missing}: listed in {index} but missing under {raw}")
    native = decode_native(paths, workers=workers, progress=progress)
    with atomic_path(out, suffix=".npy") as tmp:
        resize_to_file(native, size, filter_name, tmp, workers=workers, progress=progress)
    return (len(native), size, size)


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hccr resize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", required=True, help="raw folder (Kaggle layout)")
    parser.add_argument("--index", required=True, help="index CSV (hccr index)")
    parser.add_argument("--size", required=True, type=int, help="output side length S (64 = native)")
    parser.add_argument("--filter", default="bilinear", help=f"resampling filter: {' | '.join(FILTERS)}")
    parser.add_argument("--out", required=True, help="output .npy (N, S, S) uint8")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    args = parser.parse_args(argv)
    shape = make_images(args.raw, args.index, args.size, args.filter, args.out, workers=args.workers)
    print(f"{args.out}: uint8 {shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
