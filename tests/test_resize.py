"""hccr.data.resize: native copy, resampled sizes, determinism, load_images checks, atomic output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hccr.data.arrays import load_images
from hccr.data.index import build_index
from hccr.data.resize import FILTERS, main, make_images
from hccr.errors import ConfigError, DataError

from helpers_data import make_raw, truncate_file


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("resize")
    raw = make_raw(base / "raw", writers=3, samples=2)
    index = base / "index.csv"
    build_index(raw).to_csv(index, index=False)
    return raw, index


def test_native_is_decoded_jpeg_unchanged(data, tmp_path):
    raw, index = data
    out = tmp_path / "images_64.npy"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hccr.data.resize",
            "--raw",
            str(raw),
            "--index",
            str(index),
            "--size",
            "64",
            "--filter",
            "bilinear",
            "--out",
            str(out),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    images = load_images(out)
    table = build_index(raw)
    assert images.shape == (len(table), 64, 64) and images.dtype == np.uint8
    for i in (0, 17, len(table) - 1):
        assert np.array_equal(images[i], np.asarray(Image.open(raw / table.path[i])))
    assert [p.name for p in tmp_path.iterdir()] == ["images_64.npy"]


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_resized_with_named_filter(data, tmp_path, name):
    raw, index = data
    out = tmp_path / "images_40.npy"
    assert make_images(raw, index, 40, name, out, workers=2, progress=False) == (90, 40, 40)
    images = load_images(out)
    table = build_index(raw)
    expected = Image.open(raw / table.path[33]).resize((40, 40), FILTERS[name])
    assert np.array_equal(images[33], np.asarray(expected))
    again = tmp_path / "again.npy"
    make_images(raw, index, 40, name, again, workers=1, progress=False)
    assert again.read_bytes() == out.read_bytes()


def test_large_size_row_order(data, tmp_path):
    raw, index = data
    out = tmp_path / "images_96.npy"
    make_images(raw, index, 96, "bilinear", out, workers=2, progress=False)
    images = load_images(out)
    native = np.stack([np.asarray(Image.open(raw / p)) for p in build_index(raw).path])
    # Mean brightness per row follows the index order (ink amount survives resizing).
    assert np.corrcoef(images.reshape(90, -1).mean(1), native.reshape(90, -1).mean(1))[0, 1] > 0.95


def test_bad_filter_and_truncated_image(data, tmp_path):
    raw, index = data
    with pytest.raises(ConfigError, match="'cubic'"):
        make_images(raw, index, 32, "cubic", tmp_path / "x.npy", progress=False)
    import shutil

    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    truncate_file(copy / "data" / "data" / "input_3_1_14.jpg")
    out = tmp_path / "out" / "images_64.npy"
    assert main(["--raw", str(copy), "--index", str(index), "--size", "64", "--out", str(out)]) == 2
    with pytest.raises(DataError, match="input_3_1_14.jpg"):
        make_images(copy, index, 64, "bilinear", out, workers=2, progress=False)
    assert not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_load_images_rejects_bad_files(tmp_path):
    with pytest.raises(DataError, match="missing.npy"):
        load_images(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="junk.npy"):
        load_images(tmp_path / "junk.npy")
    np.save(tmp_path / "float.npy", np.zeros((2, 8, 8), dtype=np.float32))
    with pytest.raises(DataError, match="float32"):
        load_images(tmp_path / "float.npy")
    np.save(tmp_path / "flat.npy", np.zeros((2, 8), dtype=np.uint8))
    with pytest.raises(DataError, match="flat.npy"):
        load_images(tmp_path / "flat.npy")
