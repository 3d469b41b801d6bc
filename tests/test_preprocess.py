"""hccr.serving.preprocess: any image -> the 64x64 dataset glyph -> the model's input, as training saw it."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from hccr.errors import DataError
from hccr.serving import preprocess
from hccr.serving.preprocess import canonical_glyph, glyph_to_size, open_image, to_model_input


def make_glyph(peak: int = 170, shift: int = 0) -> np.ndarray:
    """A dataset-like glyph: soft light strokes (a cross and a bar) on black, 64x64 uint8."""
    image = Image.new("L", (64, 64), 0)
    draw = ImageDraw.Draw(image)
    draw.line([(22 + shift, 24), (42 + shift, 24)], fill=peak, width=3)
    draw.line([(32 + shift, 18), (32 + shift, 44)], fill=peak, width=3)
    draw.line([(24 + shift, 40), (40 + shift, 40)], fill=peak - 30, width=2)
    return np.asarray(image)


def as_user_image(glyph: np.ndarray, size: int = 300, mode: str = "RGB") -> Image.Image:
    """The glyph as people have it: dark ink on white paper, larger, in colour."""
    return Image.fromarray(255 - glyph).resize((size, size), Image.Resampling.BILINEAR).convert(mode)


def close(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def test_native_glyph_passes_through_unchanged():
    glyph = make_glyph()
    assert np.array_equal(canonical_glyph(Image.fromarray(glyph)), glyph)
    # The same pixels as RGB: still a dataset glyph.
    assert np.array_equal(canonical_glyph(Image.fromarray(glyph).convert("RGB")), glyph)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16"])
def test_dark_on_light_any_mode_maps_back_to_the_glyph(mode):
    glyph = make_glyph()
    if mode == "I;16":
        image = Image.fromarray((255 - glyph).astype(np.uint16) * 257).resize((300, 300), Image.Resampling.BILINEAR)
    else:
        image = as_user_image(glyph, mode=mode)
    result = canonical_glyph(image)
    assert result.shape == (64, 64) and result.dtype == np.uint8
    assert result[:3].max() == 0 and result[:, :3].max() == 0  # black frame, as in the dataset
    assert close(result, glyph) < 3.0  # grey levels, mean over the frame
    assert abs(int(result.max()) - int(glyph.max())) <= 15


def test_transparent_png_reads_as_ink_on_paper():
    glyph = make_glyph()
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., 3] = glyph  # black ink whose opacity is the stroke, on a transparent sheet
    result = canonical_glyph(Image.fromarray(rgba, "RGBA").resize((128, 128)))
    assert close(result, glyph) < 4.0


def test_polarity_both_ways_gives_the_same_glyph():
    glyph = make_glyph()
    light = Image.fromarray(glyph).resize((200, 200), Image.Resampling.BILINEAR)
    dark = Image.fromarray(255 - glyph).resize((200, 200), Image.Resampling.BILINEAR)
    assert close(canonical_glyph(light), canonical_glyph(dark)) < 1.0


def test_stroke_level_is_brought_into_the_dataset_range():
    faint = as_user_image(make_glyph(peak=60))  # pale pencil on white
    bold = Image.fromarray(np.where(make_glyph() > 0, 255, 0).astype(np.uint8)).resize((200, 200))
    assert int(canonical_glyph(faint).max()) == pytest.approx(preprocess.STROKE_PEAK[0], abs=1)
    assert int(canonical_glyph(bold).max()) == pytest.approx(preprocess.STROKE_PEAK[1], abs=1)


def test_paper_tone_noise_and_a_far_speck_do_not_move_the_character():
    glyph = make_glyph()
    rng = np.random.default_rng(0)
    paper = np.full((256, 256), 215.0) + rng.normal(0, 6, (256, 256))
    ink = np.asarray(Image.fromarray(glyph).resize((256, 256), Image.Resampling.BILINEAR), dtype=float)
    page = np.clip(paper - ink * 0.9, 0, 255)
    clean = canonical_glyph(Image.fromarray(page.astype(np.uint8)))
    page[250:252, 3:5] = 20  # a speck of dirt in a corner
    specked = canonical_glyph(Image.fromarray(page.astype(np.uint8)))
    assert close(clean, specked) < 0.5
    assert close(clean, glyph) < 6.0


def test_tight_crop_and_small_character_on_a_page_are_reframed():
    glyph = make_glyph()
    top, bottom, left, right = preprocess.ink_box(glyph.astype(np.float32))
    tight = Image.fromarray(255 - glyph[top : bottom + 1, left : right + 1]).resize(
        ((right - left + 1) * 8, (bottom - top + 1) * 8), Image.Resampling.BILINEAR
    )
    page = Image.new("L", (1600, 1200), 255)
    page.paste(Image.fromarray(255 - glyph).resize((96, 96), Image.Resampling.BILINEAR), (900, 700))
    for image in (tight, page):
        result = canonical_glyph(image)
        top, bottom, left, right = preprocess.ink_box(result.astype(np.float32))
        height, width = bottom - top + 1, right - left + 1
        side = max(height, width)
        expected = preprocess.typical_side(height, width)
        assert abs(side - expected) <= 2  # the archive's typical size for this shape
        assert abs((top + bottom) / 2 - 31.5) <= 2 and abs((left + right) / 2 - 31.5) <= 2  # centred


def test_flat_boxes_get_the_small_size_of_flat_dataset_glyphs():
    assert preprocess.typical_side(4, 30) < preprocess.typical_side(20, 20) < preprocess.typical_side(34, 20)


def test_blank_images_are_refused():
    for image in (Image.new("L", (100, 100), 255), Image.new("RGB", (50, 80), (30, 30, 30))):
        with pytest.raises(DataError, match="no ink"):
            canonical_glyph(image, "blank.png")


def test_model_input_resizes_with_the_training_filter_and_normalises():
    glyph = make_glyph()
    images = [Image.fromarray(glyph), as_user_image(glyph)]
    x = to_model_input(images, 32, mean=0.05, std=0.2, resize_filter="bicubic")
    assert x.shape == (2, 1, 32, 32) and x.dtype == torch.float32
    # Exactly what the resize step stores for size 32, then ((x / 255) - mean) / std.
    stored = np.asarray(Image.fromarray(glyph, mode="L").resize((32, 32), Image.Resampling.BICUBIC))
    assert np.array_equal(glyph_to_size(glyph, 32, "bicubic"), stored)
    assert torch.allclose(x[0, 0], torch.from_numpy((stored / 255.0 - 0.05) / 0.2).float(), atol=1e-6)
    assert to_model_input(images[:1], 64, 0.0, 1.0)[0, 0].mul(255).round().byte().numpy().tolist() == glyph.tolist()
    with pytest.raises(DataError, match="resize filter"):
        to_model_input(images, 32, 0.0, 1.0, resize_filter="sinc")


def test_open_image_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="x.png: empty file"):
        open_image(b"", "x.png")
    with pytest.raises(DataError, match="y.png: not an image"):
        open_image(b"hello", "y.png")
    buffer = io.BytesIO()
    Image.fromarray(make_glyph()).resize((400, 400)).save(buffer, format="JPEG")
    with pytest.raises(DataError, match="z.jpg: broken or truncated"):
        open_image(buffer.getvalue()[:800], "z.jpg")
    big = io.BytesIO()
    Image.new("1", (8000, 7000)).save(big, format="PNG")  # 56 MP, tiny file
    with pytest.raises(DataError, match="too large"):
        open_image(big.getvalue(), "big.png")
    assert open_image(big.getvalue(), "big.png", max_pixels=60_000_000).size == (8000, 7000)
    path = tmp_path / "ok.png"
    Image.fromarray(make_glyph()).save(path)
    assert open_image(path).size == (64, 64)


def test_a_png_cut_anywhere_past_its_last_checksum_is_refused():
    buffer = io.BytesIO()
    Image.fromarray(make_glyph()).save(buffer, format="PNG")
    data = buffer.getvalue()
    # Cutting inside the pixel stream's zlib trailer or the end chunk still decodes every pixel, so
    # load() alone would accept it; only the IEND checksum (last 4 bytes) may go without losing anything.
    for cut in range(5, len(data)):
        with pytest.raises(DataError, match="short.png: (broken or truncated|not an image)"):
            open_image(data[:-cut], "short.png")
    assert open_image(data[:-4], "short.png").size == (64, 64)


@pytest.mark.realdata
def test_constants_match_the_real_archive(real_archive):
    """The figures in the module docstring, re-measured on every glyph of the archive."""
    with zipfile.ZipFile(real_archive) as handle:
        names = sorted(n for n in handle.namelist() if n.endswith(".jpg"))
        glyphs = np.stack([np.asarray(Image.open(io.BytesIO(handle.read(n)))) for n in names])
    figures = preprocess.measure_glyphs(glyphs)
    assert figures["n"] == len(names) >= 13_500
    smallest, largest = figures["box_side_min_max"]  # framed: the archive's range, +3 px at the top
    assert (smallest, largest + 3) == preprocess.FRAMED_SIDE
    assert figures["stroke_peak"][0] == pytest.approx(preprocess.STROKE_PEAK[0], abs=2)
    assert figures["stroke_peak"][-1] == pytest.approx(preprocess.STROKE_PEAK[1], abs=2)
    measured = [figures["side_by_shape"][c]["median_side"] for c in preprocess.SHAPE_CENTRES]
    assert np.allclose(measured, preprocess.TYPICAL_SIDE, atol=0.5)
    assert all(figures["side_by_shape"][c]["n"] >= 50 for c in preprocess.SHAPE_CENTRES)
    assert figures["border_p90_max"] <= preprocess.NATIVE_BORDER_MAX  # every archive file passes through
    assert figures["box_center_row"][2] == pytest.approx(32, abs=1.5)
    assert figures["box_center_col"][2] == pytest.approx(32, abs=1.5)
