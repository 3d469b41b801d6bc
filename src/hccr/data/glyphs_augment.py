"""Make a printed glyph look handwritten: stroke width, elastic warp, affine, blur, ink level.

Works on a light-on-black glyph drawn at `SUPERSAMPLE` times the output size (so a 1-pixel
erode or dilate changes strokes by half an output pixel), with PIL and numpy only: the data
steps stay free of torch, and PIL's MESH transform is a piecewise-bilinear warp, which is
what an elastic distortion on a coarse grid is. Every random number comes from the `rng`
passed in, so a seed fixes every image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

SUPERSAMPLE = 2
ERODE_KEEP = 0.5  # an erosion that would leave less than this share of the ink is skipped


@dataclass(frozen=True)
class GlyphAugment:
    """Ranges the variants draw from (params.yaml `glyphs.augment`)."""

    stroke: tuple[int, ...] = (-1, -1, 0, 1)  # erode (-) / dilate (+) passes of a 3x3 cross, at 2x
    degrees: float = 8.0  # rotation, +-
    shear: float = 0.15  # horizontal shear factor, +-
    scale: tuple[float, float] = (0.5, 1.05)  # Chinese MNIST writers draw anywhere from small to full-frame
    translate: float = 0.1  # share of the side, +-
    elastic: float = 0.04  # grid-vertex jitter, share of the side (standard deviation)
    elastic_grid: int = 3  # cells per side of the warp grid
    blur: float = 1.2  # Gaussian radius at 2x, drawn from [0, blur]
    ink: tuple[float, float] = (0.55, 1.0)  # peak stroke brightness (Chinese MNIST strokes are rarely 255)
    noise: float = 0.2  # relative Gaussian noise on the ink, standard deviation drawn from [0, noise]

    @classmethod
    def from_dict(cls, spec: dict | None) -> GlyphAugment:
        spec = dict(spec or {})
        for key in ("stroke", "scale", "ink"):
            if key in spec:
                spec[key] = tuple(spec[key])
        return cls(**spec)


def stroke_width(image: Image.Image, steps: int) -> Image.Image:
    """Bolder (steps > 0) or thinner (< 0) strokes: grey-level dilation / erosion with a 3x3 cross.

    In numpy: PIL's MaxFilter/MinFilter do the same at 20x the cost (0.6 ms per pass at 128 px).
    """
    if steps == 0:
        return image
    pixels = np.asarray(image)
    ink = int(pixels.sum(dtype=np.int64))
    pick = np.maximum if steps > 0 else np.minimum
    for _ in range(abs(steps)):
        padded = np.pad(pixels, 1, mode="edge")
        thinner = pick.reduce(
            [padded[1:-1, 1:-1], padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
        )
        if steps < 0 and thinner.sum(dtype=np.int64) < ERODE_KEEP * ink:
            break  # a thin (Ming) font would lose its strokes: thin it no further
        pixels = thinner
    return Image.fromarray(pixels, mode="L")


def _affine_matrix(aug: GlyphAugment, rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, t) of the forward map x -> A (x - c) + c + t: rotation, shear, scale, shift about the centre."""
    angle = np.deg2rad(rng.uniform(-aug.degrees, aug.degrees))
    scale = rng.uniform(*aug.scale)
    shear = rng.uniform(-aug.shear, aug.shear)
    shift = rng.uniform(-aug.translate, aug.translate, size=2) * side
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]]) * scale, shift


def warp(image: Image.Image, aug: GlyphAugment, rng: np.random.Generator) -> Image.Image:
    """Affine and elastic distortion in one PIL MESH transform.

    The output grid's inner vertices are jittered (elastic), then mapped back through the
    inverse affine to the source; each cell is warped bilinearly, and neighbouring cells share
    vertices, so the warp is continuous.
    """
    side, cells = image.size[0], aug.elastic_grid
    matrix, shift = _affine_matrix(aug, rng, side)
    centre = np.array([side / 2, side / 2])
    edges = np.linspace(0, side, cells + 1)
    grid = np.stack(np.meshgrid(edges, edges, indexing="xy"), axis=-1)  # (row, col, xy) output vertices
    grid[1:-1, 1:-1] += rng.normal(0, aug.elastic * side, size=(cells - 1, cells - 1, 2))
    source = (grid - centre - shift) @ np.linalg.inv(matrix).T + centre
    mesh = []
    for r in range(cells):
        for c in range(cells):
            box = (int(edges[c]), int(edges[r]), int(edges[c + 1]), int(edges[r + 1]))
            # source quad: upper-left, lower-left, lower-right, upper-right
            quad = (*source[r, c], *source[r + 1, c], *source[r + 1, c + 1], *source[r, c + 1])
            mesh.append((box, tuple(float(v) for v in quad)))
    return image.transform(image.size, Image.Transform.MESH, mesh, resample=Image.Resampling.BILINEAR)


def augment(glyph: Image.Image, size: int, aug: GlyphAugment, rng: np.random.Generator) -> np.ndarray:
    """A light-on-black glyph at SUPERSAMPLE * size -> one handwriting-like uint8 image (size, size).

    Order: stroke width, affine + elastic warp, downsample, blur, ink level with ink noise. The
    background stays black, as in Chinese MNIST; the noise varies the strokes' brightness.
    """
    image = stroke_width(glyph, int(rng.choice(aug.stroke)))
    image = warp(image, aug, rng).resize((size, size), Image.Resampling.BOX)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, aug.blur) / SUPERSAMPLE))
    small = np.asarray(image, dtype=np.float32)
    small *= rng.uniform(*aug.ink) * (1.0 + rng.normal(0, rng.uniform(0, aug.noise), size=small.shape))
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)
