"""Turn any image of one handwritten character into the model's input, as training saw it.

Training saw Chinese MNIST glyphs: 64x64 8-bit grayscale, light strokes on a black
background, resized to the model's input size S with PIL `Image.resize((S, S), filter)`
(params `resize.filter`, 64 itself unchanged) and normalised as `((x / 255) - mean) / std`.
People have scans and photos instead: any size, RGB/RGBA/palette/16-bit, dark ink on light
paper. `canonical_glyph` maps such an image onto the dataset's 64x64 format; the rest
repeats the training pipeline exactly.

Steps of `canonical_glyph` (figures measured on the real archive, all 13,500 glyphs, with
`measure_glyphs`; `tests/test_preprocess.py` re-measures them when the archive is present):

1. **Grayscale.** EXIF orientation applied; transparency composited onto white (ink on a
   transparent sheet reads as ink on paper); 16-bit and float images scaled to 0..255;
   images larger than `WORKING_SIDE` (1024 px) are first shrunk by area averaging.
2. **Native pass-through.** An image that already is a dataset glyph (64x64 on a black
   frame: 90th percentile of the 2-px border ring <= 8; in the archive that figure is at
   most 3.9) is returned unchanged, so Chinese MNIST files reach the model bit-for-bit as in
   training. It still has to pass step 4's ink check: a blank 64x64 frame is refused too.
3. **Polarity.** Ink is the minority of pixels, so the median pixel is background. If the
   median lies above the midpoint of the darkest and brightest values of a lightly smoothed
   copy (`ink_smoothed`), the background is bright (ink on paper): the image is inverted.
4. **Background.** The paper is removed where it is: a grey opening (min then max filter,
   `BACKGROUND_WINDOW` = 9 px of a 64-px frame, on a 3x3 median-filtered copy) erases the
   strokes and leaves the paper's local level, blotches and shading, which are subtracted;
   then the paper's grain (3 x the 75th percentile of what is left outside the ink) is
   subtracted too, and the result clipped at 0. A dataset glyph (black paper) comes out
   unchanged. Before issue 14 one global median was subtracted: on light textured paper
   the blotches stayed as faint ink and accuracy fell to ~14 % (docs/robustness.md).
   The ink peak is the maximum of the smoothed image (`ink_smoothed`: a Gaussian of 0.7 px
   damps single noisy pixels and keeps one-pixel strokes, which a 3x3 median erased); a
   peak under `MIN_CONTRAST` (12 grey levels) means no ink: refused.
5. **Ink box.** Ink = smoothed pixels above `INK_THRESHOLD` x peak (0.2: above JPEG
   and paper noise, below the soft stroke edges); the box is trimmed to the central 99 % of
   ink mass along each axis, so a speck of dirt far from the character does not stretch it.
   With this rule the archive's ink box has a longer side of 24 px (median; quartiles
   19 / 29; 1st-99th percentile 10-44 px) and its centre sits mid-frame (row 32.5, col 33).
6. **Frame.** Chinese MNIST glyphs are the cells of a form the volunteers wrote in, so the
   frame carries the character's size: 一 spans ~13 px, 零 ~34 px (median rule), and the models use it.
   - *Framed*: when the image, padded to a centred square, holds an ink box whose longer
     side would be 6-60 px of 64 (`FRAMED_SIDE`: the archive's smallest and largest, 6 and
     57 px, plus 3 px for resampling), the image already is a cell: the whole square is
     resized to 64 (Lanczos), keeping the writer's size and placement. (Until issue 14 the
     range was the 1st-99th percentile, 9-43 px by the median rule of the time: the 2-3 % outside it were
     reframed when inverted, and that alone cost 1.5 points; docs/robustness.md.)
   - *Reframed*: otherwise (a tight crop, or a small character on a large page) the box is
     scaled so its longer side is the archive's median for boxes of that shape
     (`TYPICAL_SIDE` by log2(height / width): 14-16 px for flat boxes like 一 and 二,
     23 px for square ones, 27-28 px for tall ones) and centred in the 64-px frame.
   Why not always reframe to one size: on 900 held-out glyphs a small CNN (98.0 %
   accurate on the files) dropped to 87 % when every glyph was reframed to a 22-px box
   (一 read as 四 when enlarged), 89 % with the shape-dependent size; the framed path keeps
   97.8 % on the same glyphs inverted and upscaled to 300x300 RGB (Lanczos there: 97.1 %
   vs 93.7 % with bilinear, whose wider kernel blurs the strokes).
7. **Stroke level.** The archive's per-glyph maximum ranges 125-229 (5th-95th percentile,
   median 175); a glyph whose peak falls outside that range is scaled to the nearest end of
   it (`STROKE_PEAK`), one inside it is left as it is (forcing 175 cost ~0.6 points above).
8. **Model size.** The uint8 64x64 glyph is resized to the model's input size with the
   training resize filter (`hccr.data.resize.FILTERS`; `bilinear` unless the checkpoint says
   otherwise) and normalised with the checkpoint's mean and std.

Decoding is guarded (`open_image`): the header's pixel count is checked against
`MAX_PIXELS` (50 megapixels) before any pixel is decoded; PIL's own `MAX_IMAGE_PIXELS`
guard is left at its default (~89 MP, an error at twice that) as a second line, and its
`DecompressionBombWarning` is raised as an error rather than printed.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError
from scipy.ndimage import gaussian_filter

from hccr.data.resize import FILTERS  # the resize step's own filter table: same names, same PIL filters
from hccr.errors import DataError
from hccr.normalization import normalize

DATASET_SIZE = 64
STROKE_PEAK = (125.0, 229.0)
# Median longer ink-box side (px of 64) by box shape log2(height / width), bins of 0.5
# centred on these values (bins with >= 50 archive glyphs; flatter or taller shapes clamp).
SHAPE_CENTRES = (-2.25, -1.75, -1.25, -0.75, -0.25, 0.25, 0.75, 1.25)
TYPICAL_SIDE = (20.0, 16.0, 14.0, 23.0, 23.0, 23.0, 27.0, 28.0)
# Longer ink-box side (px of 64) of a glyph that is framed as it is: the archive's smallest
# and largest (6 and 57 px over all 13,500, by step 5's rule), the top widened by 3 px for resampling; a tight
# crop (ink box over 60 of 64 px) is reframed. Issue 14's ablation: framing only the 1st-99th percentile
# (9-43 px) reframed 2-3 % of real glyphs and cost 1.5 points on inverted test images.
FRAMED_SIDE = (6.0, 60.0)
# A grey opening this wide (px of a 64-px frame) removes every stroke (the archive's are
# 2-5 px wide) and leaves the paper: its local level, blotches and shading included.
BACKGROUND_WINDOW = 9
# After the paper's level is removed, its grain is what remains outside the strokes: this
# percentile of the non-ink pixels, times GRAIN_FACTOR, is subtracted too (on 200 real test
# glyphs on textured paper, factor 1 / 2 / 3 / 4 scored 42 / 90 / 93 / 87 %).
GRAIN_PERCENTILE = 75
GRAIN_FACTOR = 3.0
WORKING_SIDE = 1024
FRAME_FILTER = Image.Resampling.LANCZOS
INK_THRESHOLD = 0.2
# Smoothing (Gaussian sigma, px) of the copy whose extremes decide the polarity and whose
# pixels above INK_THRESHOLD x peak are ink (steps 3 and 5). Until issue 14's last round a
# 3x3 median did this and erased one-pixel strokes: 1 of 1,050 validation glyphs on textured
# paper, 15 with the ink at 60 %, kept the wrong polarity, and thin faint ones were refused as
# blank. Chosen on the validation writers (docs/robustness.md): 0.5 and 0.7 tie, 1.0 loses.
INK_SMOOTHING = 0.7
BOX_MASS_TRIM = 0.005
MIN_CONTRAST = 12.0
MIN_INK_PIXELS = 8  # a native glyph needs at least this many pixels of visible ink
NATIVE_BORDER_MAX = 8.0
MAX_PIXELS = 50_000_000


def resample_filter(name: str) -> Image.Resampling:
    """PIL filter for a params `resize.filter` name."""
    try:
        return FILTERS[str(name).lower()]
    except KeyError:
        raise DataError(f"unknown resize filter {name!r}; choose from {', '.join(FILTERS)}") from None


def open_image(source: str | os.PathLike | bytes, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file (path or bytes) fully, refusing oversized or broken files.

    Raises DataError naming `name` (or the path) for anything that is not a readable image.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as exc:
        raise DataError(f"{label}: cannot read file ({exc.strerror or exc})") from None
    if not data:
        raise DataError(f"{label}: empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise DataError(
                    f"{label}: image too large ({width}x{height} = {width * height / 1e6:.1f} megapixels; "
                    f"limit {max_pixels / 1e6:.0f})"
                )
            # load() stops once the pixels are decoded; verify() also checks every chunk's checksum and
            # the end marker, so a file cut short inside its trailer is refused, not half-trusted.
            image.verify()
            image = Image.open(io.BytesIO(data))
            image.load()
        except DataError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(f"{label}: image too large ({exc})") from None
        except UnidentifiedImageError:
            raise DataError(f"{label}: not an image (format not recognised)") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise DataError(f"{label}: broken or truncated image ({exc})") from None
    return image


def grayscale_array(image: Image.Image) -> np.ndarray:
    """float32 (H, W) in 0..255: orientation applied, transparency on white, any bit depth."""
    return _reduce(_gray(ImageOps.exif_transpose(image)))


def _gray(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in {"I", "F"} or mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float32)
        top = float(array.max()) if array.size else 0.0
        if top > 255:
            # 16-bit data is scaled from its full range; other wide data from its maximum.
            array = array * (255.0 / (65535.0 if top <= 65535 else top))
        return np.clip(array, 0, 255).astype(np.float32)
    has_alpha = mode in {"RGBA", "LA", "PA", "La", "RGBa"} or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"), dtype=np.float32)


def _border(array: np.ndarray, width: int = 2) -> np.ndarray:
    return np.concatenate(
        [array[:width].ravel(), array[-width:].ravel(), array[:, :width].ravel(), array[:, -width:].ravel()]
    )


def is_native_glyph(array: np.ndarray) -> bool:
    """True for an image already in the dataset's format: 64x64 on a black frame."""
    return array.shape == (DATASET_SIZE, DATASET_SIZE) and float(np.percentile(_border(array), 90)) <= NATIVE_BORDER_MAX


def light_on_dark(array: np.ndarray, smoothing: str = "gaussian") -> np.ndarray:
    """Invert ink-on-paper images so that strokes are bright on a dark background."""
    smooth = ink_smoothed(array, smoothing)  # extremes of a smoothed copy: ink, not single noisy pixels
    low, high = float(smooth.min()), float(smooth.max())
    if float(np.median(array)) > (low + high) / 2:
        return 255.0 - array
    return array


def ink_smoothed(array: np.ndarray, smoothing: str = "gaussian") -> np.ndarray:
    """A copy in which noise is damped and every stroke survives, however thin (steps 3 and 5).

    `gaussian`: a Gaussian of `INK_SMOOTHING` px. `median`: the 3x3 median used before, which
    erases a stroke one pixel wide (3 of its 9 pixels are ink), as a faint writer's 一 on
    textured paper is; kept for the framing ablation.
    """
    if smoothing == "median":
        return _median3(array)
    return gaussian_filter(np.asarray(array, dtype=np.float32), INK_SMOOTHING)


def _median3(array: np.ndarray) -> np.ndarray:
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.MedianFilter(3)), dtype=np.float32)


def _mass_span(profile: np.ndarray, trim: float) -> tuple[int, int]:
    """First and last index of a 1-D ink profile after trimming `trim` of its mass per side."""
    cumulative = np.cumsum(profile)
    total = cumulative[-1]
    start = int(np.searchsorted(cumulative, trim * total, side="right"))
    stop = int(np.searchsorted(cumulative, (1 - trim) * total, side="left"))
    return start, max(start, min(stop, len(profile) - 1))


def ink_box(ink: np.ndarray, label: str = "image", smoothing: str = "gaussian") -> tuple[int, int, int, int]:
    """(top, bottom, left, right), inclusive, of the ink in a light-on-dark, background-free array."""
    smooth = ink_smoothed(ink, smoothing)
    peak = float(smooth.max()) if smooth.size else 0.0
    if peak < MIN_CONTRAST:
        raise DataError(f"{label}: no ink found (blank image or contrast under {MIN_CONTRAST:g} grey levels)")
    mass = np.where(smooth > INK_THRESHOLD * peak, smooth, 0.0)
    top, bottom = _mass_span(mass.sum(axis=1), BOX_MASS_TRIM)
    left, right = _mass_span(mass.sum(axis=0), BOX_MASS_TRIM)
    return top, bottom, left, right


def _reduce(array: np.ndarray) -> np.ndarray:
    """Shrink very large images to WORKING_SIDE (area average): a 64-px glyph needs no more detail."""
    longest = max(array.shape)
    if longest <= WORKING_SIDE:
        return array
    scale = WORKING_SIDE / longest
    size = (max(1, round(array.shape[1] * scale)), max(1, round(array.shape[0] * scale)))
    return np.asarray(Image.fromarray(array, mode="F").resize(size, Image.Resampling.BOX), dtype=np.float32)


def typical_side(height: int, width: int) -> float:
    """The archive's median longer ink-box side (px of 64) for a box of this shape."""
    shape = float(np.clip(np.log2(height / width), SHAPE_CENTRES[0], SHAPE_CENTRES[-1]))
    return float(np.interp(shape, SHAPE_CENTRES, TYPICAL_SIDE))


def paper_level(bright: np.ndarray, window: int = BACKGROUND_WINDOW) -> np.ndarray:
    """The local background level of a light-on-dark image (float, same shape).

    A grey opening (min then max filter, `window` px of a 64-px frame) erases the strokes and
    keeps the paper. It runs on a copy scaled so its longer side is 64 px (cheap at any size,
    and the window keeps its meaning), then is scaled back (bilinear).
    """
    height, width = bright.shape
    scale = DATASET_SIZE / max(height, width)
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(bright.astype(np.float32), mode="F")
    if small_size != (width, height):
        down = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        image = image.resize(small_size, down)
    opened = image.filter(ImageFilter.MinFilter(window)).filter(ImageFilter.MaxFilter(window))
    if small_size != (width, height):
        opened = opened.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(opened, dtype=np.float32)


def remove_background(
    bright: np.ndarray, mode: str = "local", grain_factor: float = GRAIN_FACTOR, smoothing: str = "gaussian"
) -> np.ndarray:
    """Light-on-dark ink with the paper removed (step 4): 0 where there is no ink.

    `local`: the paper's local level (`paper_level` of a 3x3 median-filtered copy: single
    grainy pixels would drag the opening's minimum below the paper), then its grain
    (`grain_factor` x the `GRAIN_PERCENTILE` percentile of the non-ink pixels) is
    subtracted. On a dataset glyph level and grain are ~0 (black paper), so the glyph is
    unchanged; on blotchy or shaded paper they remove what the model never saw. `median`:
    one global level (the step before issue 14); `none`: the image as it is.
    """
    if mode == "none":
        return bright
    if mode == "median":
        return np.clip(bright - float(np.median(bright)), 0, None)
    ink = np.clip(bright - paper_level(_median3(bright)), 0, None)
    smooth = ink_smoothed(ink, smoothing)
    paper = ink[smooth <= INK_THRESHOLD * float(smooth.max())]  # not ink (step 5's rule)
    grain = float(np.percentile(paper, GRAIN_PERCENTILE)) if paper.size else 0.0
    # Subtracted everywhere: zeroing only the pixels under it (ink keeping its level) left the
    # grain inside and around the strokes, and scored worse (54 % against 93 % on textured paper).
    return np.clip(ink - grain_factor * grain, 0, None) if grain > 0 else ink


def _framed(ink: np.ndarray, frame_filter: Image.Resampling = FRAME_FILTER) -> np.ndarray:
    """The whole image, padded to a centred square, as the 64-px frame (float)."""
    height, width = ink.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype=np.float32)
    row, col = (side - height) // 2, (side - width) // 2
    square[row : row + height, col : col + width] = ink
    image = Image.fromarray(square, mode="F").resize((DATASET_SIZE, DATASET_SIZE), frame_filter)
    return np.asarray(image, dtype=np.float32)


def _reframed(
    ink: np.ndarray, box: tuple[int, int, int, int], frame_filter: Image.Resampling = FRAME_FILTER
) -> np.ndarray:
    """The ink box scaled to the archive's typical size for its shape, centred in the 64-px frame."""
    top, bottom, left, right = box
    crop = ink[top : bottom + 1, left : right + 1]
    scale = typical_side(*crop.shape) / max(crop.shape)
    height = min(DATASET_SIZE, max(1, round(crop.shape[0] * scale)))
    width = min(DATASET_SIZE, max(1, round(crop.shape[1] * scale)))
    scaled = Image.fromarray(crop.astype(np.float32), mode="F").resize((width, height), frame_filter)
    frame = np.zeros((DATASET_SIZE, DATASET_SIZE), dtype=np.float32)
    row, col = (DATASET_SIZE - height) // 2, (DATASET_SIZE - width) // 2
    frame[row : row + height, col : col + width] = np.asarray(scaled, dtype=np.float32)
    return frame


@dataclass(frozen=True)
class Framing:
    """Which steps of `canonical_glyph` run (defaults: all, as `hccr predict` uses them).

    The switches exist for the framing ablation (bench/bench_framing_ablation.py), which
    measures what each step costs on real test writers; there is one framing code path.
    `frame`: `auto` (framed or reframed by the ink box, step 6), `framed` or `reframed`
    always. `frame_filter`: the PIL filter name of step 6's resampling. `smoothing`: how steps
    3 and 5 damp noise (`ink_smoothed`).
    """

    native_shortcut: bool = True
    invert: bool = True
    background: str = "local"
    frame: str = "auto"
    framed_side: tuple[float, float] = FRAMED_SIDE
    frame_filter: str = "lanczos"
    stroke_peak: bool = True
    grain_factor: float = GRAIN_FACTOR
    smoothing: str = "gaussian"

    def __post_init__(self):
        if self.frame not in FRAME_MODES:
            raise DataError(f"framing: frame must be one of {', '.join(FRAME_MODES)}, not {self.frame!r}")
        if self.background not in BACKGROUND_MODES:
            raise DataError(
                f"framing: background must be one of {', '.join(BACKGROUND_MODES)}, not {self.background!r}"
            )
        if self.smoothing not in SMOOTHING_MODES:
            raise DataError(f"framing: smoothing must be one of {', '.join(SMOOTHING_MODES)}, not {self.smoothing!r}")
        resample_filter(self.frame_filter)


FRAME_MODES = ("auto", "framed", "reframed")
# local: the paper's local level (grey opening) and grain are removed (step 4); median: one
# global paper level (before issue 14); none: nothing removed.
BACKGROUND_MODES = ("local", "median", "none")
SMOOTHING_MODES = ("gaussian", "median")
DEFAULT_FRAMING = Framing()
# A model's framing: model block `framing`, stored in its checkpoint (config) and in its ONNX
# metadata (hccr.framings), so predict frames a file as that model was trained. `cell` (the
# default) frames a file as a dataset cell (step 6); `ink_box` crops every file, the archive's
# own too, to its ink box scaled to the typical size for its shape, so a padded or shifted
# file gives the original's glyph (docs/robustness.md, "Two framings").
FRAMINGS = {"cell": DEFAULT_FRAMING, "ink_box": Framing(native_shortcut=False, frame="reframed")}


def framing_named(name: str, where: str = "framing") -> Framing:
    """The Framing called `name` (FRAMINGS); DataError naming `where` otherwise."""
    if name not in FRAMINGS:
        raise DataError(f"{where}: unknown framing {name!r}; known framings: {', '.join(FRAMINGS)}")
    return FRAMINGS[name]


def canonical_glyph(image: Image.Image, label: str = "image", framing: Framing = DEFAULT_FRAMING) -> np.ndarray:
    """The image as a dataset glyph: uint8 (64, 64), light strokes on black (see module doc)."""
    gray = grayscale_array(image)
    if gray.size == 0:
        raise DataError(f"{label}: image has no pixels")
    if framing.native_shortcut and is_native_glyph(gray):
        # A blank frame is no glyph either. Counted, not median-filtered: a 2-px stroke is ink here.
        if np.count_nonzero(gray - float(np.median(gray)) >= MIN_CONTRAST) < MIN_INK_PIXELS:
            raise DataError(f"{label}: no ink found (blank image or contrast under {MIN_CONTRAST:g} grey levels)")
        return np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    bright = light_on_dark(gray, framing.smoothing) if framing.invert else gray
    ink = remove_background(bright, framing.background, framing.grain_factor, framing.smoothing)
    top, bottom, left, right = ink_box(ink, label, framing.smoothing)
    box_side = max(bottom - top + 1, right - left + 1) * DATASET_SIZE / max(ink.shape)
    fits = framing.framed_side[0] <= box_side <= framing.framed_side[1]
    frame_filter = resample_filter(framing.frame_filter)
    if framing.frame == "framed" or (framing.frame == "auto" and fits):
        frame = _framed(ink, frame_filter)
    else:
        frame = _reframed(ink, (top, bottom, left, right), frame_filter)
    frame = np.clip(frame, 0, None)
    peak = float(frame.max())
    if peak <= 0:
        raise DataError(f"{label}: no ink left after scaling")
    # Only a peak outside the archive's usual range is moved, to the nearest end of it.
    target = min(max(peak, STROKE_PEAK[0]), STROKE_PEAK[1]) if framing.stroke_peak else peak
    return np.clip(np.rint(frame * (target / peak)), 0, 255).astype(np.uint8)


def glyph_to_size(glyph: np.ndarray, input_size: int, resize_filter: str = "bilinear") -> np.ndarray:
    """A 64x64 uint8 glyph at the model's input size, resized exactly as the resize step does."""
    if glyph.shape == (input_size, input_size):
        return glyph
    image = Image.fromarray(glyph).resize((input_size, input_size), resample_filter(resize_filter))
    return np.asarray(image, dtype=np.uint8)


def to_model_input(
    images: Sequence[Image.Image],
    input_size: int,
    mean: float,
    std: float,
    resize_filter: str = "bilinear",
):
    """Model input (B, 1, S, S) float32 tensor for a list of PIL images of single characters."""
    if not images:
        raise DataError("to_model_input: no images given")
    glyphs = np.stack(
        [
            glyph_to_size(canonical_glyph(image, f"image {i}"), input_size, resize_filter)
            for i, image in enumerate(images)
        ]
    )
    return normalize(glyphs, mean, std)


def measure_glyphs(glyphs: np.ndarray) -> dict:
    """Figures behind the constants above, measured on native dataset glyphs (uint8 (N, 64, 64))."""
    peaks, sides, shapes, rows, cols, borders = [], [], [], [], [], []
    for glyph in np.asarray(glyphs):
        array = glyph.astype(np.float32)
        peaks.append(float(array.max()))
        borders.append(float(np.percentile(_border(array), 90)))
        top, bottom, left, right = ink_box(array)
        height, width = bottom - top + 1, right - left + 1
        sides.append(max(height, width))
        shapes.append(np.log2(height / width))
        rows.append((top + bottom) / 2)
        cols.append((left + right) / 2)
    sides_array, shapes_array = np.asarray(sides, dtype=float), np.asarray(shapes)
    by_shape = {}
    for centre in SHAPE_CENTRES:
        members = np.abs(shapes_array - centre) <= 0.25
        if members.any():
            by_shape[centre] = {"n": int(members.sum()), "median_side": float(np.median(sides_array[members]))}

    def quantiles(values, q=(5, 25, 50, 75, 95)):
        return [float(v) for v in np.percentile(values, q)]

    return {
        "n": len(peaks),
        "stroke_peak": quantiles(peaks),
        "box_side": quantiles(sides),
        "box_side_p1_p99": quantiles(sides, (1, 99)),
        "box_side_min_max": quantiles(sides, (0, 100)),
        "side_by_shape": by_shape,
        "box_center_row": quantiles(rows),
        "box_center_col": quantiles(cols),
        "border_p90_max": float(np.max(borders)),
    }
