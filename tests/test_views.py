"""hccr.data.views: each glyph as predict frames a user's file, and the loader that swaps them in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hccr.data import views
from hccr.errors import ConfigError, DataError
from hccr.evaluation.transforms import FUNCTIONS
from hccr.serving.preprocess import Framing, canonical_glyph, glyph_to_size, open_image
from hccr.training.loader import BatchLoader

from helpers_data import stroke_glyph


@pytest.fixture()
def glyph_file(tmp_path):
    array = np.stack([stroke_glyph(i) for i in range(24)] + [np.zeros((64, 64), np.uint8)])  # last: blank
    path = tmp_path / "images_64.npy"
    np.save(path, array)
    return path


def test_each_view_is_predicts_framing_of_the_drawn_file(glyph_file):
    settings = views.ViewSettings(seed=5)
    out, families = views.render_views(str(glyph_file), settings, 32, "bilinear", workers=1, progress=False)
    glyphs = np.load(glyph_file)
    assert out.shape == (25, 32, 32) and out.dtype == np.uint8
    for row in (0, 7, 13):
        family, options = views.draw(settings, row)
        data = FUNCTIONS[family](glyphs[row], 5 * 1_000_003 + row, **options)
        expected = glyph_to_size(canonical_glyph(open_image(data)), 32, "bilinear")
        np.testing.assert_array_equal(out[row], expected)
        assert families[row] == family
    assert not np.array_equal(out[0], glyph_to_size(glyphs[0], 32))  # a view is not the file


def test_views_can_be_framed_as_another_model_is_used(glyph_file):
    """A model used with another framing (every file cropped to its ink box) trains on views framed so."""
    settings, by_box = views.ViewSettings(seed=5), Framing(native_shortcut=False, frame="reframed")
    out, _ = views.render_views(str(glyph_file), settings, 64, workers=1, progress=False, framing=by_box)
    default, _ = views.render_views(str(glyph_file), settings, 64, workers=1, progress=False)
    glyphs = np.load(glyph_file)
    for row in (0, 7, 13):
        family, options = views.draw(settings, row)
        data = FUNCTIONS[family](glyphs[row], 5 * 1_000_003 + row, **options)
        np.testing.assert_array_equal(out[row], canonical_glyph(open_image(data), framing=by_box))
    assert not np.array_equal(out[:24], default[:24])


def test_views_are_seeded_and_do_not_depend_on_the_workers(glyph_file, monkeypatch):
    monkeypatch.setattr(views, "CHUNK", 10)  # several tasks
    one, names_one = views.render_views(str(glyph_file), views.ViewSettings(seed=1), 64, workers=1, progress=False)
    two, names_two = views.render_views(str(glyph_file), views.ViewSettings(seed=1), 64, workers=2, progress=False)
    other, _ = views.render_views(str(glyph_file), views.ViewSettings(seed=2), 64, workers=1, progress=False)
    np.testing.assert_array_equal(one, two)
    assert names_one == names_two
    assert not np.array_equal(one, other)


def test_every_family_and_setting_is_drawn_within_its_range():
    settings = views.ViewSettings(seed=0, jpeg_quality=(40, 45), shifted_pad=(6, 6), enlarged_size=(100, 110))
    seen = {}
    for row in range(400):
        family, options = views.draw(settings, row)
        seen.setdefault(family, []).append(options)
    assert set(seen) == set(views.FAMILIES)
    assert all(40 <= o["quality"] <= 45 for o in seen["jpeg"])
    assert all(o["pad"] == 6 and max(map(abs, o["shift"])) <= 6 for o in seen["shifted"])
    assert all(100 <= o["size"] <= 110 and o["filter"] in settings.enlarged_filters for o in seen["enlarged"])
    assert {o["invert"] for o in seen["enlarged"]} == {True, False}
    assert all(170 <= o["level"] <= 240 and 4 <= o["grain"] <= 16 for o in seen["textured"])
    only_jpeg = views.ViewSettings.from_dict({"families": {name: 0 for name in views.FAMILIES} | {"jpeg": 1}})
    assert {views.draw(only_jpeg, row)[0] for row in range(50)} == {"jpeg"}
    weighted = views.ViewSettings.from_dict(
        {"families": {"jpeg": 3, "textured": 1, "inverted": 0, "enlarged": 0, "shifted": 0}}
    )
    drawn = [views.draw(weighted, row)[0] for row in range(2000)]
    assert 0.7 < drawn.count("jpeg") / len(drawn) < 0.8 and set(drawn) == {"jpeg", "textured"}


def test_a_view_predict_refuses_keeps_the_glyph_and_is_listed(glyph_file, tmp_path):
    out, summary = tmp_path / "v.npy", tmp_path / "v.json"
    code = views.main(
        ["--images", str(glyph_file), "--size", "64", "--workers", "1", "--out", str(out), "--summary", str(summary)]
    )
    assert code == 0
    report = json.loads(summary.read_text())
    assert 24 in report["kept_rows"]  # the blank frame: no ink to find
    assert np.load(out)[24].max() == 0
    assert sum(report["families"].values()) == report["images"] == 25
    assert [name for name, _ in report["settings"]["families"]] == list(views.FAMILIES)


def test_bad_settings_and_inputs_are_refused_naming_them(glyph_file, tmp_path):
    with pytest.raises(ConfigError, match=r"views\.jpeg_quality: \[low, high\]"):
        views.ViewSettings.from_dict({"jpeg_quality": [90, 30]})
    with pytest.raises(ConfigError, match=r"views\.families"):
        views.ViewSettings.from_dict({"families": {"rotated": 1}})
    with pytest.raises(ConfigError, match=r"views\.families: every weight is 0"):
        views.ViewSettings.from_dict({"families": {name: 0 for name in views.FAMILIES}})
    wide = tmp_path / "images_32.npy"
    np.save(wide, np.zeros((3, 32, 32), np.uint8))
    out = tmp_path / "v.npy"
    code = views.main(["--images", str(wide), "--size", "32", "--out", str(out), "--summary", str(tmp_path / "s.json")])
    assert code != 0 and not out.exists()


# ---------------------------------------------------------------- the loader's swap


def loader(images, view_array, share, **kw):
    ids = np.arange(len(images))
    augment = {"enabled": False, "views": share}
    return BatchLoader(
        images, ids, ids % 15, 8, shuffle=True, seed=3, mean=0.0, std=1.0, augment_cfg=augment, views=view_array, **kw
    )


def pixels(batches):
    return torch.cat([x for x, _ in batches])[:, 0].numpy()


@pytest.fixture()
def pair():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 128, size=(40, 16, 16), dtype=np.uint8)  # images < 128 <= views
    return images, (images + 128).astype(np.uint8)


def test_share_zero_is_the_plain_loader_and_share_one_is_all_views(pair):
    images, view_array = pair
    plain = pixels(loader(images, None, 0.0))
    np.testing.assert_array_equal(pixels(loader(images, view_array, 0.0)), plain)
    np.testing.assert_allclose(pixels(loader(images, view_array, 1.0)), plain + 128 / 255, atol=1e-6)


@pytest.mark.parametrize("in_memory", [True, False])
def test_half_the_images_are_swapped_fixed_per_epoch(pair, in_memory):
    images, view_array = pair
    first = loader(images, view_array, 0.5, in_memory=in_memory)
    epoch0 = pixels(first)
    swapped = epoch0.reshape(40, -1).max(axis=1) >= 128 / 255
    assert 10 <= swapped.sum() <= 30
    again = loader(images, view_array, 0.5, in_memory=not in_memory)
    np.testing.assert_array_equal(pixels(again), epoch0)  # same draws from either storage
    first.set_epoch(1)
    assert not np.array_equal(pixels(first).reshape(40, -1).max(axis=1) >= 128 / 255, swapped)
    first.set_epoch(0)
    np.testing.assert_array_equal(pixels(first), epoch0)  # a swap never writes into the kept copy


def test_loader_refuses_missing_or_mismatched_views(pair):
    images, view_array = pair
    with pytest.raises(DataError, match="augment.views is 0.5 but no views array"):
        loader(images, None, 0.5)
    with pytest.raises(DataError, match="must match the images array"):
        loader(images, view_array[:10], 0.5)
