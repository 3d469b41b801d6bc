"""Issue 12, item 8: a blank image at the dataset's native size is refused like any other blank."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from hccr.errors import DataError
from hccr.serving.preprocess import canonical_glyph, open_image


def glyph() -> np.ndarray:
    image = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(image).line([(20, 32), (44, 32)], fill=180, width=3)
    return np.asarray(image)


@pytest.mark.parametrize("level", [0, 3, 8])
def test_blank_native_frame_has_no_ink(level):
    with pytest.raises(DataError, match="blank64.png: no ink found"):
        canonical_glyph(Image.new("L", (64, 64), level), "blank64.png")


def test_gif_with_a_blank_first_frame_has_no_ink():
    frames = [Image.new("L", (64, 64), 0).convert("P"), Image.fromarray(glyph()).convert("P")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    image = open_image(buffer.getvalue(), name="anim.gif")
    with pytest.raises(DataError, match="anim.gif: no ink found"):
        canonical_glyph(image, "anim.gif")


def test_a_native_glyph_still_passes_through_bit_for_bit():
    original = glyph()
    assert np.array_equal(canonical_glyph(Image.fromarray(original), "g.png"), original)


def test_a_thin_native_glyph_is_ink_but_a_few_bright_specks_are_not():
    thin = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(thin).line([(20, 20), (44, 44)], fill=200, width=2)  # a median filter would erase it
    assert canonical_glyph(thin, "thin.png").max() == 200
    specks = np.zeros((64, 64), np.uint8)
    specks[[10, 30, 50], [12, 33, 47]] = 255
    with pytest.raises(DataError, match="specks.png: no ink found"):
        canonical_glyph(Image.fromarray(specks), "specks.png")
