"""Offline Chinese-MNIST-shaped data: the 15 numerals drawn from stroke skeletons.

`generate(out_dir, writers=100, samples_per_writer=10, seed=0)` writes the Kaggle layout
(`chinese_mnist.csv` with CRLF line endings and `data/data/input_{suite}_{sample}_{code}.jpg`,
64x64 grayscale JPEG, light strokes on black) so every later step runs unchanged on it.

Each glyph is a list of strokes (polylines in a 0..1 box, x to the right, y down). A writer
has a style drawn once from (seed, writer): slant (shear), rotation, scale, offset, stroke
width, ink brightness, jitter amplitude and a fixed per-writer deformation of every control
point; each sample adds its own jitter from (seed, writer, sample, code). Strokes are drawn at
4x resolution with PIL and reduced with a box filter (anti-aliasing), then saved as JPEG.
Every image depends only on its own seeds, so output bytes are identical for the same seed.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from hccr.data.layout import CHINESE_MNIST
from hccr.data.workers import default_workers
from hccr.errors import ConfigError

SIZE = 64
SUPERSAMPLE = 4
JPEG_QUALITY = 92

# Stroke skeletons, one entry per code (1..15), in Chinese MNIST's code order.
GLYPHS: dict[str, list[list[tuple[float, float]]]] = {
    # 零 simplified: rain-radical top (bar, hood, centre stroke, dots) over a 令-like bottom.
    "零": [
        [(0.22, 0.08), (0.78, 0.08)],
        [(0.14, 0.28), (0.14, 0.17), (0.86, 0.17), (0.84, 0.30)],
        [(0.50, 0.08), (0.50, 0.34)],
        [(0.28, 0.23), (0.36, 0.27)],
        [(0.64, 0.23), (0.72, 0.27)],
        [(0.50, 0.38), (0.12, 0.62)],
        [(0.50, 0.38), (0.88, 0.62)],
        [(0.44, 0.58), (0.56, 0.63)],
        [(0.30, 0.70), (0.70, 0.70), (0.70, 0.84), (0.60, 0.81)],
        [(0.46, 0.70), (0.46, 0.95)],
    ],
    "一": [[(0.08, 0.52), (0.50, 0.49), (0.92, 0.50)]],
    "二": [[(0.24, 0.34), (0.76, 0.32)], [(0.10, 0.68), (0.90, 0.66)]],
    "三": [[(0.22, 0.20), (0.78, 0.19)], [(0.30, 0.50), (0.70, 0.49)], [(0.10, 0.82), (0.90, 0.80)]],
    "四": [
        [(0.14, 0.22), (0.14, 0.82)],
        [(0.14, 0.22), (0.86, 0.22), (0.86, 0.82)],
        [(0.14, 0.80), (0.86, 0.80)],
        [(0.40, 0.22), (0.38, 0.50), (0.28, 0.62)],
        [(0.60, 0.22), (0.60, 0.56), (0.72, 0.56)],
    ],
    "五": [
        [(0.18, 0.14), (0.82, 0.14)],
        [(0.46, 0.14), (0.36, 0.84)],
        [(0.28, 0.46), (0.70, 0.46), (0.66, 0.84)],
        [(0.08, 0.86), (0.92, 0.86)],
    ],
    "六": [
        [(0.48, 0.06), (0.54, 0.20)],
        [(0.12, 0.34), (0.88, 0.34)],
        [(0.40, 0.50), (0.20, 0.86)],
        [(0.60, 0.50), (0.82, 0.86)],
    ],
    "七": [
        [(0.08, 0.48), (0.92, 0.36)],
        [(0.40, 0.08), (0.40, 0.80), (0.50, 0.88), (0.90, 0.88), (0.90, 0.74)],
    ],
    "八": [
        [(0.42, 0.18), (0.36, 0.56), (0.10, 0.86)],
        [(0.58, 0.24), (0.74, 0.60), (0.92, 0.86)],
    ],
    "九": [
        [(0.46, 0.08), (0.42, 0.50), (0.10, 0.90)],
        [(0.14, 0.34), (0.70, 0.34), (0.70, 0.80), (0.80, 0.88), (0.94, 0.86), (0.94, 0.70)],
    ],
    "十": [[(0.08, 0.46), (0.92, 0.46)], [(0.50, 0.08), (0.50, 0.94)]],
    "百": [
        [(0.08, 0.12), (0.92, 0.12)],
        [(0.50, 0.12), (0.40, 0.30)],
        [(0.26, 0.30), (0.26, 0.90)],
        [(0.26, 0.30), (0.74, 0.30), (0.74, 0.90)],
        [(0.26, 0.60), (0.74, 0.60)],
        [(0.26, 0.88), (0.74, 0.88)],
    ],
    "千": [[(0.76, 0.08), (0.28, 0.24)], [(0.08, 0.46), (0.92, 0.46)], [(0.50, 0.18), (0.50, 0.94)]],
    "万": [
        [(0.08, 0.18), (0.92, 0.18)],
        [(0.40, 0.18), (0.36, 0.60), (0.10, 0.90)],
        [(0.38, 0.44), (0.80, 0.44), (0.76, 0.84), (0.60, 0.90)],
    ],
    "亿": [
        [(0.34, 0.08), (0.08, 0.50)],
        [(0.24, 0.34), (0.24, 0.94)],
        [(0.44, 0.20), (0.86, 0.20), (0.44, 0.80), (0.52, 0.88), (0.94, 0.88), (0.94, 0.72)],
    ],
}
assert tuple(GLYPHS) == CHINESE_MNIST.characters


def writer_style(seed: int, writer: int) -> dict:
    """A writer's fixed handwriting style, drawn from (seed, writer) alone."""
    rng = np.random.default_rng([seed, writer, 0])
    return {
        "shear": rng.uniform(-0.30, 0.30),
        "rotation": rng.uniform(-0.12, 0.12),
        "scale": rng.uniform(0.62, 0.88),
        "aspect": rng.uniform(0.85, 1.15),
        "offset": rng.uniform(-0.06, 0.06, size=2),
        "width": rng.uniform(2.0, 4.2),  # stroke width in 64-px pixels
        "ink": rng.uniform(150.0, 180.0),
        "jitter": rng.uniform(0.010, 0.030),
        # A fixed warp per writer (the writer's habits), one vector per glyph control point.
        "warp_seed": int(rng.integers(2**31)),
    }


# Each glyph's control points in one array, and where each stroke ends (for np.split).
_GLYPH_POINTS = [np.concatenate([np.asarray(s, dtype=np.float64) for s in g]) for g in GLYPHS.values()]
_GLYPH_SPLITS = [np.cumsum([len(s) for s in g])[:-1] for g in GLYPHS.values()]


def _points(code: int, style: dict, rng: np.random.Generator) -> list[np.ndarray]:
    """The glyph's strokes in supersampled pixel space after the writer's style and the sample's jitter."""
    base = _GLYPH_POINTS[code - 1]
    warp = np.random.default_rng([style["warp_seed"], code]).normal(0.0, 0.025, size=base.shape)
    jitter = rng.normal(0.0, style["jitter"], size=base.shape)
    scale = style["scale"] * rng.uniform(0.95, 1.05)
    offset = style["offset"] + rng.normal(0.0, 0.02, size=2)
    cos, sin = np.cos(style["rotation"]), np.sin(style["rotation"])
    # shear + aspect, then rotation, then scale: one 2x2 matrix applied to row vectors.
    shape = np.array([[style["aspect"], 0.0], [style["shear"], 1.0]])
    rotate = np.array([[cos, sin], [-sin, cos]])
    points = ((base + warp + jitter - 0.5) @ (shape @ rotate) * scale + 0.5 + offset) * (SIZE * SUPERSAMPLE)
    return np.split(points, _GLYPH_SPLITS[code - 1])


def _sample(code: int, writer: int, sample: int, seed: int, style: dict | None) -> tuple[int, int, list[np.ndarray]]:
    """(stroke width, ink level, strokes in supersampled pixels) of one sample."""
    style = writer_style(seed, writer) if style is None else style
    rng = np.random.default_rng([seed, writer, sample, code])
    width = max(1, round(style["width"] * rng.uniform(0.85, 1.15) * SUPERSAMPLE))
    ink = int(np.clip(style["ink"] * rng.uniform(0.93, 1.03), 120, 200))
    return width, ink, _points(code, style, rng)


def strokes(code: int, writer: int, sample: int, seed: int, style: dict | None = None) -> list[np.ndarray]:
    """The polylines `render` draws for this sample, in order, as (n, 2) arrays of (x, y) in 0..1 of the side.

    What a hand would trace: `hccr serve`'s browser test draws them stroke by stroke on the page.
    """
    return [stroke / (SIZE * SUPERSAMPLE) for stroke in _sample(code, writer, sample, seed, style)[2]]


def render(code: int, writer: int, sample: int, seed: int, style: dict | None = None) -> Image.Image:
    """One 64x64 grayscale image of `code` by `writer`, sample `sample`."""
    width, ink, paths = _sample(code, writer, sample, seed, style)
    big = SIZE * SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    for stroke in paths:
        coords = [tuple(pt) for pt in stroke.round(1).tolist()]
        draw.line(coords, fill=ink, width=width, joint="curve")
        for x, y in (coords[0], coords[-1]):  # round stroke ends
            r = width / 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    return canvas.reduce(SUPERSAMPLE)


def _write_writers(job: tuple[str, list[int], int, int]) -> int:
    """Render and save every image of some writers (one worker's share)."""
    image_dir, writers, samples_per_writer, seed = job
    for writer in writers:
        style = writer_style(seed, writer)
        for sample in range(1, samples_per_writer + 1):
            for code in range(1, len(CHINESE_MNIST) + 1):
                image = render(code, writer, sample, seed, style)
                image.save(Path(image_dir) / f"input_{writer}_{sample}_{code}.jpg", format="JPEG", quality=JPEG_QUALITY)
    return len(writers) * samples_per_writer * len(CHINESE_MNIST)


def generate(
    out_dir: str | os.PathLike,
    writers: int = 100,
    samples_per_writer: int = 10,
    seed: int = 0,
    progress: bool = True,
    workers: int | None = None,
) -> dict:
    """Write `writers` x `samples_per_writer` x 15 images and the CSV into `out_dir`; return counts.

    Writers are spread over `workers` processes (default: up to 2); each image depends only on
    its own seeds, so the bytes do not depend on the number of workers.
    """
    for key, value in (("synthetic.writers", writers), ("synthetic.samples_per_writer", samples_per_writer)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}: must be a positive integer, got {value!r}")

    workers = default_workers() if workers is None else max(1, workers)
    out_dir = Path(out_dir)
    image_dir = out_dir / "data" / "data"
    image_dir.mkdir(parents=True, exist_ok=True)
    total = writers * samples_per_writer * len(CHINESE_MNIST)
    per_job = max(1, min(5, writers // (4 * workers) or 1))
    jobs = [
        (str(image_dir), list(range(w, min(w + per_job, writers + 1))), samples_per_writer, seed)
        for w in range(1, writers + 1, per_job)
    ]
    with tqdm(total=total, desc="synthetic", unit="img", file=sys.stderr, disable=not progress or total < 2000) as bar:
        if workers == 1 or len(jobs) == 1:
            for done in map(_write_writers, jobs):
                bar.update(done)
        else:
            with ProcessPoolExecutor(workers) as pool:
                for done in pool.map(_write_writers, jobs):
                    bar.update(done)
    rows = ["suite_id,sample_id,code,value,character"]
    rows += [
        f"{writer},{sample},{code},{CHINESE_MNIST.values[code - 1]},{CHINESE_MNIST.characters[code - 1]}"
        for writer in range(1, writers + 1)
        for sample in range(1, samples_per_writer + 1)
        for code in range(1, len(CHINESE_MNIST) + 1)
    ]
    # Like the real file: UTF-8 with CRLF line endings.
    (out_dir / "chinese_mnist.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode("utf-8"))
    return {
        "images": total,
        "writers": writers,
        "samples_per_writer": samples_per_writer,
        "classes": len(CHINESE_MNIST),
    }
