"""The robustness transforms (deterministic, parameters honoured) and McNemar's exact test."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hccr.errors import ConfigError, HccrError
from hccr.evaluation.paired import binomial_two_sided, mcnemar_exact
from hccr.evaluation.robustness import transforms_from_settings
from hccr.evaluation.transforms import TRANSFORMS, make_transform


def glyph(seed: int = 0) -> np.ndarray:
    """A dataset-like glyph: black background, a bright bar and a dot, a little noise."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 4, (64, 64)).astype(np.uint8)
    array[20:44, 28:34] = 190
    array[30:33, 12:22] = 160
    return array


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("name", TRANSFORMS)
def test_every_transform_is_deterministic(name):
    transform = make_transform(name)
    assert transform(glyph(), 7) == transform(glyph(), 7)
    assert transform(glyph(), 7) != transform(glyph(1), 7)  # and depends on the image


def test_original_and_inverted_are_lossless():
    g = glyph()
    assert np.array_equal(np.asarray(decode(make_transform("original")(g))), g)
    assert np.array_equal(np.asarray(decode(make_transform("inverted")(g))), 255 - g)


def test_enlarged_honours_size_polarity_and_mode():
    g = glyph()
    image = decode(make_transform("enlarged", {"size": 300, "invert": True, "filter": "bicubic"})(g))
    assert image.size == (300, 300) and image.mode == "RGB"
    gray = np.asarray(image.convert("L"), dtype=float)
    assert gray[:20, :20].mean() > 245  # paper is white: inverted
    assert gray[150, 145] < 100  # the bar (rows 20-44, cols 28-34 of 64) is dark ink
    plain = decode(make_transform("enlarged", {"size": 128, "invert": False})(g))
    assert plain.size == (128, 128) and np.asarray(plain.convert("L"))[:10, :10].mean() < 10


def test_shifted_pads_and_moves_the_glyph_exactly():
    g = glyph()
    array = np.asarray(decode(make_transform("shifted", {"pad": 10, "shift": [4, -3]})(g)))
    assert array.shape == (84, 84)
    assert np.array_equal(array[10 - 3 : 10 - 3 + 64, 10 + 4 : 10 + 4 + 64], g)
    assert array.sum() == g.sum()  # nothing but black was added


def test_shift_outside_the_padding_is_refused():
    with pytest.raises(ConfigError, match="shift"):
        make_transform("shifted", {"pad": 4, "shift": [8, 0]})


def test_jpeg_quality_is_honoured():
    g = glyph()
    low, high = make_transform("jpeg", {"quality": 10})(g), make_transform("jpeg", {"quality": 90})(g)
    assert low[:2] == b"\xff\xd8" and high[:2] == b"\xff\xd8"  # JPEG files
    assert len(low) < len(high)
    error = [np.abs(np.asarray(decode(d), dtype=float) - g).mean() for d in (low, high)]
    assert error[1] < error[0] < 20


def test_textured_paper_has_the_asked_tone_and_texture_and_dark_ink():
    g = glyph()
    flat = np.asarray(decode(make_transform("textured", {"level": 200, "amplitude": 0, "grain": 8})(g)), dtype=float)
    assert flat[:10, :10].mean() == pytest.approx(200 * (1 - 1.5 / 255), abs=2)  # paper x (1 - noise / 255)
    assert flat[25, 30] == pytest.approx(200 * (1 - 190 / 255), abs=1)  # the stroke darkens the paper
    rough = np.asarray(decode(make_transform("textured", {"level": 200, "amplitude": 30, "grain": 8})(g)), dtype=float)
    assert rough[:16, :].std() > 5 * flat[:16, :].std()
    transform = make_transform("textured")
    assert transform(g, 1) != transform(g, 2)  # the seed (the image id) draws the paper


def test_unknown_transform_or_key_is_refused_naming_it():
    with pytest.raises(ConfigError, match="blur"):
        make_transform("blur")
    with pytest.raises(ConfigError, match="jpeg"):
        make_transform("jpeg", {"qualty": 50})


def test_settings_choose_enabled_transforms_in_order():
    chosen = transforms_from_settings(
        {"transforms": {"textured": {"enabled": True}, "jpeg": {"enabled": False, "quality": 5}, "inverted": {}}}
    )
    assert list(chosen) == ["original", "inverted", "textured"]
    with pytest.raises(HccrError, match="sepia"):
        transforms_from_settings({"transforms": {"sepia": {}}})


# ------------------------------------------------------------------ McNemar, by hand


def test_binomial_tails_by_hand():
    assert binomial_two_sided(0, 0) == 1.0
    assert binomial_two_sided(0, 3) == pytest.approx(2 / 8)  # P(0) = 1/8, doubled
    assert binomial_two_sided(1, 6) == pytest.approx(2 * 7 / 64)  # P(0) + P(1) = (1 + 6) / 64
    assert binomial_two_sided(5, 6) == binomial_two_sided(1, 6)  # symmetric
    assert binomial_two_sided(0, 10) == pytest.approx(2 / 1024)
    assert binomial_two_sided(3, 6) == 1.0  # 2 x (1 + 6 + 15 + 20) / 64 > 1: capped


def test_mcnemar_counts_only_discordant_pairs():
    a = np.array([1, 1, 1, 1, 0, 0, 1, 0], dtype=bool)
    b = np.array([1, 0, 0, 0, 0, 1, 1, 0], dtype=bool)
    result = mcnemar_exact(a, b)
    assert (result.n, result.only_a, result.only_b) == (8, 3, 1)
    assert result.p_value == pytest.approx(2 * (1 + 4) / 16)  # b ~ Bin(4, 1/2): P(X <= 1) doubled
    same = mcnemar_exact(a, a)
    assert (same.only_a, same.only_b, same.p_value) == (0, 0, 1.0)


def test_mcnemar_refuses_unpaired_arrays():
    with pytest.raises(ValueError, match="paired"):
        mcnemar_exact([True, False], [True])
