"""The reframe step (hccr.data.reframe): the archive framed as an ink_box model is used."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hccr.data.reframe import main as reframe_main
from hccr.data.reframe import reframe_archive
from hccr.serving.preprocess import FRAMINGS, canonical_glyph, glyph_to_size

from helpers_data import stroke_glyph


@pytest.fixture()
def archive(tmp_path):
    """Five stroke glyphs, a small one placed off-centre, and a blank cell, as the native array."""
    glyphs = [stroke_glyph(seed) for seed in range(5)]
    small = np.zeros((64, 64), dtype=np.uint8)
    small[5:25, 40:60] = np.asarray(Image.fromarray(stroke_glyph(9)).resize((20, 20)))
    glyphs += [small, np.zeros((64, 64), dtype=np.uint8)]
    path = tmp_path / "images_64.npy"
    np.save(path, np.stack(glyphs))
    return path


def test_every_row_is_predicts_ink_box_framing_at_the_model_size(archive, tmp_path):
    out, summary = tmp_path / "ink_box" / "images_32.npy", tmp_path / "ink_box" / "images_32.json"
    args = ["--images", str(archive), "--framing", "ink_box", "--size", "32", "--filter", "bicubic"]
    assert reframe_main([*args, "--workers", "2", "--out", str(out), "--summary", str(summary)]) == 0
    native, framed = np.load(archive), np.load(out)
    assert framed.shape == (7, 32, 32) and framed.dtype == np.uint8
    for row in range(6):
        glyph = canonical_glyph(Image.fromarray(native[row]), f"row {row}", FRAMINGS["ink_box"])
        assert np.array_equal(framed[row], glyph_to_size(glyph, 32, "bicubic")), row
    # The off-centre glyph comes out centred, as predict frames any file for this model.
    assert np.abs(centre_of_ink(native[5]) - 32).max() > 12
    assert np.abs(centre_of_ink(framed[5]) - 16).max() < 3
    # The blank cell has no ink: kept as it is, and listed.
    assert np.array_equal(framed[6], np.zeros((32, 32), dtype=np.uint8))
    record = json.loads(summary.read_text())
    assert record["refused_rows"] == [6] and record["framing"] == "ink_box" and record["images"] == 7


def centre_of_ink(glyph: np.ndarray) -> np.ndarray:
    rows, cols = np.indices(glyph.shape)
    weight = glyph.astype(float) / glyph.sum()
    return np.array([(rows * weight).sum(), (cols * weight).sum()])


def test_workers_do_not_change_the_result(archive):
    one, _ = reframe_archive(str(archive), "ink_box", 64, workers=1)
    two, _ = reframe_archive(str(archive), "ink_box", 64, workers=2)
    assert np.array_equal(one, two)


def test_bad_inputs_are_refused_naming_them(archive, tmp_path, capsys):
    resized = tmp_path / "images_32.npy"
    np.save(resized, np.zeros((3, 32, 32), dtype=np.uint8))
    out = tmp_path / "out.npy"
    base = ["--size", "64", "--out", str(out), "--summary", str(tmp_path / "out.json")]
    assert reframe_main(["--images", str(resized), "--framing", "ink_box", *base]) == 2
    assert "images_32.npy" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        reframe_main(["--images", str(archive), "--framing", "sideways", *base])
    assert "sideways" in capsys.readouterr().err and not out.exists()
