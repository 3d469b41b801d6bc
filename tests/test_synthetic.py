"""hccr.data.synthetic: determinism, counts, Kaggle layout, writer style and distinct glyphs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hccr.data.fetch import verify_dataset
from hccr.data.synthetic import GLYPHS, generate, render

from helpers_data import CHARACTERS, VALUES

W, S = 4, 3


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("syn")
    a = generate(base / "a", writers=W, samples_per_writer=S, seed=5, progress=False, workers=2)
    generate(base / "b", writers=W, samples_per_writer=S, seed=5, progress=False, workers=1)
    generate(base / "c", writers=W, samples_per_writer=S, seed=6, progress=False)
    return base, a


def test_same_seed_same_bytes_other_seed_differs(sets):
    # a (2 processes) and b (1 process) share the seed: identical bytes; c has another seed.
    base, _ = sets
    a, b, c = _digest(base / "a"), _digest(base / "b"), _digest(base / "c")
    assert a == b
    assert a.keys() == c.keys()
    images = [k for k in a if k.endswith(".jpg")]
    assert sum(a[k] != c[k] for k in images) == len(images)


def test_counts_and_layout(sets):
    base, counts = sets
    assert counts == {"images": W * S * 15, "writers": W, "samples_per_writer": S, "classes": 15}
    assert verify_dataset(base / "a", workers=1, progress=False) == counts
    raw = (base / "a" / "chinese_mnist.csv").read_bytes()
    assert raw.startswith(b"suite_id,sample_id,code,value,character\r\n")
    frame = pd.read_csv(base / "a" / "chinese_mnist.csv")
    assert sorted(frame.suite_id.unique()) == list(range(1, W + 1))
    assert sorted(frame.sample_id.unique()) == list(range(1, S + 1))
    assert sorted(frame.code.unique()) == list(range(1, 16))
    assert (frame.character == [CHARACTERS[c - 1] for c in frame.code]).all()
    assert (frame.value == [VALUES[c - 1] for c in frame.code]).all()


def test_images_look_like_chinese_mnist(sets):
    base, _ = sets
    pixels = np.stack([np.asarray(Image.open(p)) for p in sorted((base / "a" / "data" / "data").glob("*.jpg"))])
    assert pixels.shape[1:] == (64, 64) and pixels.dtype == np.uint8
    assert np.median(pixels) < 10  # black background
    maxima = pixels.reshape(len(pixels), -1).max(axis=1)
    assert 120 <= np.median(maxima) <= 210  # faint light strokes
    assert ((pixels > 60).reshape(len(pixels), -1).mean(axis=1) > 0.01).all()  # every glyph has ink


def _mean(folder: Path, writer: int, samples: list[int]) -> np.ndarray:
    stack = [
        np.asarray(Image.open(folder / "data" / "data" / f"input_{writer}_{s}_{c}.jpg"), dtype=np.float64)
        for s in samples
        for c in range(1, 16)
    ]
    return np.mean(stack, axis=0)


def test_writers_differ_in_style(tmp_path):
    generate(tmp_path, writers=3, samples_per_writer=8, seed=11, progress=False)
    within = []
    between = []
    for w in (1, 2, 3):
        within.append(np.abs(_mean(tmp_path, w, [1, 2, 3, 4]) - _mean(tmp_path, w, [5, 6, 7, 8])).mean())
    for w1, w2 in ((1, 2), (1, 3), (2, 3)):
        between.append(np.abs(_mean(tmp_path, w1, [1, 2, 3, 4]) - _mean(tmp_path, w2, [5, 6, 7, 8])).mean())
    assert min(between) > max(within)


def test_glyphs_distinct():
    # The same writer/sample/jitter for every code: any two glyph images must clearly differ.
    images = np.stack([np.asarray(render(code, 1, 1, 0), dtype=np.float64) for code in range(1, 16)])
    assert len(GLYPHS) == 15
    for i in range(15):
        for j in range(i + 1, 15):
            assert np.abs(images[i] - images[j]).mean() > 8.0, (CHARACTERS[i], CHARACTERS[j])
