"""User-style versions of a dataset glyph, for the robustness evaluation.

Each transform takes a Chinese MNIST glyph (uint8 (64, 64), light strokes on black) and
returns the encoded file a user might bring (PNG, or JPEG for `jpeg`), so that the
evaluation feeds it through `hccr predict`'s own decoding and framing. Every transform is
deterministic: the textured background draws its noise from `seed` and the image's id.

- `original`: the glyph as a lossless PNG (predict's native path).
- `inverted`: dark ink on white, 64 px.
- `enlarged`: resized to `size` px with `filter`, RGB, inverted when `invert` (a scan).
- `shifted`: padded by `pad` px of black on every side, the glyph moved by `shift` (x, y) px.
- `jpeg`: recompressed as JPEG at `quality`.
- `textured`: dark ink on light paper whose tone is `level` with smooth blotches of
  +-`amplitude` grey levels at a scale of `grain` px, plus fine grain of `amplitude / 4`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping

import numpy as np
from PIL import Image

from hccr.data.resize import FILTERS
from hccr.errors import ConfigError

TRANSFORMS = ("original", "inverted", "enlarged", "shifted", "jpeg", "textured")


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def original(glyph: np.ndarray, _seed: int = 0) -> bytes:
    return encode(Image.fromarray(glyph))


def inverted(glyph: np.ndarray, _seed: int = 0) -> bytes:
    return encode(Image.fromarray(255 - glyph))


def enlarged(
    glyph: np.ndarray, _seed: int = 0, *, size: int = 300, invert: bool = True, filter: str = "bicubic"
) -> bytes:
    source = 255 - glyph if invert else glyph
    image = Image.fromarray(source).resize((size, size), FILTERS[filter]).convert("RGB")
    return encode(image)


def shifted(glyph: np.ndarray, _seed: int = 0, *, pad: int = 16, shift: tuple[int, int] = (8, -6)) -> bytes:
    dx, dy = shift
    side = glyph.shape[0] + 2 * pad
    canvas = np.zeros((side, glyph.shape[1] + 2 * pad), dtype=np.uint8)
    canvas[pad + dy : pad + dy + glyph.shape[0], pad + dx : pad + dx + glyph.shape[1]] = glyph
    return encode(Image.fromarray(canvas))


def jpeg(glyph: np.ndarray, _seed: int = 0, *, quality: int = 50) -> bytes:
    return encode(Image.fromarray(glyph), "JPEG", quality=quality)


def paper(shape: tuple[int, int], seed: int, *, level: float, amplitude: float, grain: int) -> np.ndarray:
    """A light textured sheet (float32): smooth blotches plus fine grain, from `seed`."""
    rng = np.random.default_rng(seed)
    height, width = shape
    coarse = rng.uniform(-1, 1, (max(2, height // grain), max(2, width // grain))).astype(np.float32)
    blotches = np.asarray(Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BICUBIC))
    fine = rng.normal(0, 1, shape).astype(np.float32)
    return level + amplitude * blotches + (amplitude / 4) * fine


def textured(
    glyph: np.ndarray, seed: int = 0, *, level: float = 215.0, amplitude: float = 20.0, grain: int = 8
) -> bytes:
    sheet = paper(glyph.shape, seed, level=level, amplitude=amplitude, grain=grain)
    # Ink darkens the paper in proportion to its strength (a stroke at 255 is black).
    page = sheet * (1 - glyph.astype(np.float32) / 255)
    return encode(Image.fromarray(np.clip(np.rint(page), 0, 255).astype(np.uint8)))


FUNCTIONS: dict[str, Callable[..., bytes]] = {
    "original": original,
    "inverted": inverted,
    "enlarged": enlarged,
    "shifted": shifted,
    "jpeg": jpeg,
    "textured": textured,
}


def make_transform(name: str, settings: Mapping | None = None) -> Callable[[np.ndarray, int], bytes]:
    """`(glyph, seed) -> encoded file` for a transform and its params block (schema-checked)."""
    if name not in FUNCTIONS:
        raise ConfigError(f"robustness: unknown transform {name!r}; choose from {', '.join(TRANSFORMS)}")
    options = {k: v for k, v in dict(settings or {}).items() if k != "enabled"}
    if "shift" in options:
        options["shift"] = tuple(int(v) for v in options["shift"])
        if len(options["shift"]) != 2 or max(map(abs, options["shift"])) > int(options.get("pad", 16)):
            raise ConfigError(
                f"robustness.transforms.{name}.shift: two values, each within +-pad, not {options['shift']}"
            )
    if "filter" in options and options["filter"] not in FILTERS:
        raise ConfigError(f"robustness.transforms.{name}.filter: unknown filter {options['filter']!r}")
    function = FUNCTIONS[name]
    try:
        function(np.zeros((64, 64), dtype=np.uint8), 0, **options)  # refuse unknown keys now, naming them
    except TypeError as exc:
        raise ConfigError(f"robustness.transforms.{name}: {exc}") from None
    return lambda glyph, seed=0: function(glyph, seed, **options)
