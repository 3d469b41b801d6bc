"""The data half of the pipeline on the real Chinese MNIST archive: fetch, index, resize 64, subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from hccr import config as hccr_config
from hccr.atomic import write_csv
from hccr.data.arrays import load_images
from hccr.data.fetch import fetch
from hccr.data.index import build_index, read_index
from hccr.data.resize import make_images
from hccr.data.subset import main as subset_main
from hccr.data.subset import split_writers

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SIZES = ("small", "medium", "large", "full")


def _subsets_cfg(protocol: str) -> dict:
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["subsets"]
    return {**cfg, "protocol": protocol}


@pytest.fixture(scope="module")
def pipeline(real_archive, tmp_path_factory):
    """fetch -> index -> resize(64) -> subset (writer protocol, seeds 42, 42 again, 43; paper, 42)."""
    base = tmp_path_factory.mktemp("real")
    raw = base / "raw" / "chinese-mnist"
    source = fetch(str(real_archive), raw, progress=False)
    index_path = base / "interim" / "index.csv"
    write_csv(index_path, build_index(raw))
    images = base / "processed" / "images_64.npy"
    make_images(raw, index_path, 64, "bilinear", images, progress=False)
    splits = {}
    for name, protocol, seed in (
        ("w42", "writer", 42),
        ("w42b", "writer", 42),
        ("w43", "writer", 43),
        ("p42", "paper", 42),
    ):
        out = base / "processed" / name
        argv = [
            "--index",
            str(index_path),
            "--config-json",
            json.dumps(_subsets_cfg(protocol)),
            "--seed",
            str(seed),
            "--out-dir",
            str(out),
        ]
        assert subset_main(argv) == 0
        splits[name] = out
    return {"raw": raw, "source": source, "index": read_index(index_path), "images": images, "splits": splits}


def test_counts_read_from_csv(pipeline, real_archive):
    csv = pd.read_csv(pipeline["raw"] / "chinese_mnist.csv")
    index = pipeline["index"]
    assert len(index) == len(csv) == pipeline["source"]["counts"]["images"]
    assert index.writer.nunique() == csv.suite_id.nunique() == pipeline["source"]["counts"]["writers"]
    # the shared copy: 13,500 images of 90 writers, 900 per class
    assert len(index) == 13500 and index.writer.nunique() == 90
    assert index.code.nunique() == 15 and (index.code.value_counts() == 900).all()
    assert pipeline["source"]["sha256"] == "b0dc2fd93756295a0347cc5e7b361e609c1142e6e423028ff55424426a907971"
    assert (pipeline["raw"] / "chinese_mnist.csv").read_bytes().count(b"\r\n") == len(csv) + 1


def test_native_array_matches_jpegs(pipeline):
    images = load_images(pipeline["images"])
    index = pipeline["index"]
    assert images.shape == (len(index), 64, 64)
    for i in (0, 4321, len(index) - 1):
        assert np.array_equal(images[i], np.asarray(Image.open(pipeline["raw"] / index.path[i])))


def _read(folder: Path, scheme: str, size: str) -> pd.DataFrame:
    return pd.read_csv(folder / scheme / f"{size}.csv")


def test_writer_protocol_disjoint_and_ladders(pipeline):
    index = pipeline["index"].set_index("id")
    folder = pipeline["splits"]["w42"]
    cfg = _subsets_cfg("writer")
    groups = split_writers(pipeline["index"].writer.to_numpy(), cfg, 42)
    assert len(groups["test"]) == 9 and len(groups["val"]) == 8 and len(groups["train"]) == 73
    summary = json.loads((folder / "summary.json").read_text())
    holdout, fraction = cfg["schemes"]["holdout"], cfg["schemes"]["fraction"]
    for scheme in ("holdout", "fraction"):
        previous_train: set = set()
        for size in SIZES:
            table = _read(folder, scheme, size)
            writers = {r: set(index.loc[table.id[table.role == r], "writer"]) for r in ("train", "val", "test")}
            assert not writers["train"] & writers["val"]
            assert not writers["train"] & writers["test"]
            assert not writers["val"] & writers["test"]
            per_class = {
                r: index.loc[table.id[table.role == r], "code"].value_counts() for r in ("train", "val", "test")
            }
            assert (per_class["test"] == 90).all() and len(per_class["test"]) == 15
            if scheme == "holdout":
                n = holdout["train_per_class"][size]
                expected_train = 730 if n == "all" else n  # 73 train writers x 10 samples
                expected_val = holdout["val_per_class"]
            else:
                n = fraction["per_class"][size]
                expected_train = 730 if n == "all" else int(np.floor(fraction["train_fraction"] * n + 0.5))
                expected_val = 80 if n == "all" else n - expected_train
            assert (per_class["train"] == expected_train).all() and len(per_class["train"]) == 15
            assert (per_class["val"] == expected_val).all() and len(per_class["val"]) == 15
            assert summary["schemes"][scheme][size]["counts"]["train"] == 15 * expected_train
            train = set(table.id[table.role == "train"])
            assert previous_train < train
            previous_train = train


def test_paper_protocol_counts(pipeline):
    folder = pipeline["splits"]["p42"]
    full = _read(folder, "holdout", "full")
    assert set(full.role) == {"train", "val"} and len(full) == 13500
    assert (full.role == "val").sum() == 70 * 15
    small = _read(folder, "fraction", "small")
    assert (small.role == "train").sum() == 40 * 15 and (small.role == "val").sum() == 10 * 15


def test_splits_deterministic(pipeline):
    a, b, c = (pipeline["splits"][k] for k in ("w42", "w42b", "w43"))
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    # one file per scheme x size, and the counts
    ladder = hccr_config.scheme_sizes({"subsets": _subsets_cfg("writer")})
    expected = [f"{scheme}/{size}.csv" for scheme, size in ladder] + ["summary.json"]
    assert sorted(map(str, files)) == sorted(expected)
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert any((a / rel).read_bytes() != (c / rel).read_bytes() for rel in files if rel.suffix == ".csv")
    test_a = set(_read(a, "holdout", "small").query("role == 'test'").id)
    test_c = set(_read(c, "holdout", "small").query("role == 'test'").id)
    assert test_a != test_c
