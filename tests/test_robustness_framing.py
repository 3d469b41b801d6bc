"""One framing (issue 14): a character reaches the model the same whichever way it comes in.

Synthetic Chinese-MNIST glyphs (and a large one at the archive's biggest ink box) are
transformed as users bring them; `canonical_glyph`, the prediction path's framing, must give
back (nearly) the dataset glyph, and a model must score the versions alike. The framing as it
was before issue 14 (`Framing(background="median", framed_side=(9, 43))`) fails the same
checks, so they can fail.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hccr.errors import DataError
from hccr.evaluation.transforms import make_transform
from hccr.normalization import normalize
from hccr.serving.predict import load_predictor
from hccr.serving.preprocess import DEFAULT_FRAMING, Framing, canonical_glyph, open_image

from helpers_serve import tiny_checkpoint

BEFORE = Framing(background="median", framed_side=(9.0, 43.0))  # the framing before issue 14
USER_STYLE = {
    "inverted": {},
    "enlarged": {"size": 300, "invert": True, "filter": "bicubic"},
    "textured": {"level": 215, "amplitude": 20, "grain": 8},
}


def synthetic_glyphs(count: int = 15) -> list[np.ndarray]:
    from hccr.data.synthetic import render

    return [np.asarray(render(code, writer=code % 4, sample=1, seed=5).convert("L")) for code in range(1, count + 1)]


def large_glyph() -> np.ndarray:
    """A character whose ink box is 52 px: inside the archive's range (largest: 57 px)."""
    glyph = np.zeros((64, 64), dtype=np.uint8)
    glyph[6:58, 8:11] = 180
    glyph[6:9, 8:60] = 180
    glyph[30:33, 8:60] = 170
    glyph[6:58, 57:60] = 190
    return glyph


def framed(data: bytes, framing: Framing = DEFAULT_FRAMING) -> np.ndarray:
    return canonical_glyph(open_image(data, "test"), "test", framing).astype(float)


# Mean |difference| to the dataset glyph (grey levels) each transform may leave: inversion is
# exact but the grain step trims JPEG noise, resampling blurs a little, paper grain erodes stroke edges.
TOLERANCE = {"inverted": 2.0, "enlarged": 3.0, "textured": 8.0}


@pytest.mark.parametrize("name", sorted(USER_STYLE))
def test_user_style_images_come_back_as_the_dataset_glyph(name):
    transform = make_transform(name, USER_STYLE[name])
    for seed, glyph in enumerate(synthetic_glyphs()):
        gap = np.abs(framed(transform(glyph, seed)) - glyph)
        assert gap.mean() < TOLERANCE[name], f"glyph {seed}: mean difference {gap.mean():.2f}"


def test_a_large_character_is_framed_not_reframed():
    glyph = large_glyph()
    result = framed(make_transform("inverted")(glyph))
    assert np.abs(result - glyph).mean() < 1.0
    before = framed(make_transform("inverted")(glyph), BEFORE)  # 52 px > 43: it was shrunk to the typical size
    assert np.abs(before - glyph).mean() > 10


def test_textured_paper_is_removed_and_was_not_before():
    transform = make_transform("textured", USER_STYLE["textured"])
    glyph = synthetic_glyphs(3)[2]
    paper = glyph < 10
    now, before = framed(transform(glyph, 0)), framed(transform(glyph, 0), BEFORE)
    assert (now[paper] < 10).mean() > 0.97  # the paper is black again, as in the archive
    assert np.abs(before - glyph).mean() > 2 * np.abs(now - glyph).mean()


def test_a_dataset_glyph_through_the_full_path_is_unchanged():
    # With the native shortcut off, a Chinese MNIST glyph must still reach the model as it is.
    for glyph in synthetic_glyphs(6) + [large_glyph()]:
        data = make_transform("original")(glyph)
        full = framed(data, Framing(native_shortcut=False))
        assert np.abs(full - glyph).mean() < 2.0


def test_a_model_scores_each_version_of_a_character_alike(tmp_path):
    predictor = load_predictor(tiny_checkpoint(tmp_path / "tiny.pt", seed=3))
    glyphs = synthetic_glyphs()
    versions = {"original": {}, **USER_STYLE}
    probabilities = {}
    for name, settings in versions.items():
        transform = make_transform(name, settings)
        sized = np.stack([predictor.prepare(transform(g, i), f"{name}:{i}")[1] for i, g in enumerate(glyphs)])
        probabilities[name] = predictor.probabilities(normalize(sized, predictor.mean, predictor.std))
    for name in USER_STYLE:
        gap = np.abs(probabilities[name] - probabilities["original"]).max()
        assert gap < 0.02, f"{name}: probabilities differ by up to {gap:.3f} from the original file's"


def test_png_of_the_framed_glyph_round_trips():
    # The figure and the serve page show the framed glyph: it is a plain 8-bit 64 x 64 image.
    glyph = framed(make_transform("enlarged", USER_STYLE["enlarged"])(synthetic_glyphs(1)[0]))
    buffer = io.BytesIO()
    Image.fromarray(glyph.astype(np.uint8)).save(buffer, format="PNG")
    assert Image.open(buffer).size == (64, 64)


def thin_short_glyph() -> np.ndarray:
    """A short 一 one pixel tall, as writer 95 of the archive writes it (8 px at ~160 of 255)."""
    glyph = np.zeros((64, 64), dtype=np.uint8)
    glyph[33, 28:36] = 160
    glyph[32, 30:34] = 20  # the pen's soft edge
    return glyph


def one_pixel_stroke_found(data: bytes, framing: Framing = DEFAULT_FRAMING) -> bool:
    """Whether the framed page holds the stroke at its row, and little else."""
    try:
        rows = framed(data, framing).sum(axis=1)
    except DataError:  # "no ink found"
        return False
    return abs(int(np.argmax(rows)) - 33) <= 1 and rows[30:37].sum() > 0.8 * rows.sum()


def test_a_one_pixel_stroke_on_textured_paper_is_found_where_it_is():
    transform = make_transform("textured", USER_STYLE["textured"])
    pages = [transform(thin_short_glyph(), seed) for seed in range(20)]
    assert all(one_pixel_stroke_found(page) for page in pages)
    # The 3x3 median that smoothed steps 3 and 5 before erased the stroke: the page was refused
    # as blank, or left uninverted so the paper's grain became the "ink".
    median = Framing(smoothing="median", framed_side=(4.0, 60.0))
    assert sum(one_pixel_stroke_found(page, median) for page in pages) <= 2


def test_an_unknown_smoothing_is_refused_by_name():
    with pytest.raises(DataError, match="smoothing must be one of gaussian, median, not 'box'"):
        Framing(smoothing="box")
