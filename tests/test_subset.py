"""hccr.data.subset: both protocols, both schemes, nested ladders, counts, errors, atomic output."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from hccr.data.index import build_index
from hccr.data.subset import main, make_splits, split_writers, summarize, write_splits
from hccr.errors import ConfigError, DataError

from helpers_data import SAMPLES, WRITERS, make_raw

# 12 writers x 3 samples: 36 images per class.
WRITER_CFG = {
    "protocol": "writer",
    "test_writers": 0.2,  # round(2.4) = 2 test writers
    "val_writers": 0.2,  # round(0.2 * 10) = 2 val writers -> 8 train writers (24 per class)
    "schemes": {
        "holdout": {"val_per_class": 4, "train_per_class": {"small": 5, "medium": 10, "full": "all"}},
        "fraction": {"per_class": {"small": 5, "medium": 10, "full": "all"}, "train_fraction": 0.8},
    },
}
PAPER_CFG = {**WRITER_CFG, "protocol": "paper"}


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> pd.DataFrame:
    raw = make_raw(tmp_path_factory.mktemp("raw") / "cm", writers=WRITERS, samples=SAMPLES)
    return build_index(raw)


def _per_class(index, table, role):
    ids = table.loc[table.role == role, "id"]
    return index.set_index("id").loc[ids, "code"].value_counts().reindex(range(1, 16), fill_value=0)


def _writers(index, table, role):
    return set(index.set_index("id").loc[table.loc[table.role == role, "id"], "writer"])


def test_writer_protocol(index):
    splits = make_splits(index, WRITER_CFG, seed=7)
    assert set(splits) == {(s, z) for s in ("holdout", "fraction") for z in ("small", "medium", "full")}
    groups = split_writers(index.writer.to_numpy(), WRITER_CFG, 7)
    assert [len(groups[r]) for r in ("test", "val", "train")] == [2, 2, 8]
    test_sets = set()
    for table in splits.values():
        assert list(table.columns) == ["id", "role"]
        assert table.id.is_monotonic_increasing and not table.id.duplicated().any()
        roles = {r: _writers(index, table, r) for r in ("train", "val", "test")}
        assert roles["test"] == set(groups["test"]) and roles["val"] <= set(groups["val"])
        assert roles["train"] <= set(groups["train"])
        assert (
            not (roles["train"] & roles["val"])
            and not (roles["train"] & roles["test"])
            and not (roles["val"] & roles["test"])
        )
        test_sets.add(tuple(table.loc[table.role == "test", "id"]))
        assert (_per_class(index, table, "test") == 2 * SAMPLES).all()
    assert len(test_sets) == 1  # identical test rows in every file
    h = splits
    assert (_per_class(index, h["holdout", "small"], "train") == 5).all()
    assert (_per_class(index, h["holdout", "medium"], "train") == 10).all()
    assert (_per_class(index, h["holdout", "full"], "train") == 8 * SAMPLES).all()
    for size in ("small", "medium", "full"):
        assert (_per_class(index, h["holdout", size], "val") == 4).all()
    # fraction: round(0.8 * 5) = 4 train + 1 val; round(0.8 * 10) = 8 + 2; all = train writers / val writers
    assert (_per_class(index, h["fraction", "small"], "train") == 4).all()
    assert (_per_class(index, h["fraction", "small"], "val") == 1).all()
    assert (_per_class(index, h["fraction", "medium"], "train") == 8).all()
    assert (_per_class(index, h["fraction", "medium"], "val") == 2).all()
    assert (_per_class(index, h["fraction", "full"], "train") == 8 * SAMPLES).all()
    assert (_per_class(index, h["fraction", "full"], "val") == 2 * SAMPLES).all()


@pytest.mark.parametrize("cfg", [WRITER_CFG, PAPER_CFG], ids=["writer", "paper"])
def test_ladders_nested_and_deterministic(index, cfg):
    a = make_splits(index, cfg, seed=3)
    b = make_splits(index, cfg, seed=3)
    c = make_splits(index, cfg, seed=4)
    for key in a:
        assert a[key].equals(b[key])
    assert any(not a[key].equals(c[key]) for key in a)
    for scheme in ("holdout", "fraction"):
        train = [set(a[scheme, z].loc[a[scheme, z].role == "train", "id"]) for z in ("small", "medium", "full")]
        assert train[0] < train[1] < train[2]
    # holdout's validation pool is the same whatever the train size
    vals = {tuple(a["holdout", z].loc[a["holdout", z].role == "val", "id"]) for z in ("small", "medium", "full")}
    assert len(vals) == 1


def test_paper_protocol(index):
    splits = make_splits(index, PAPER_CFG, seed=1)
    for table in splits.values():
        assert set(table.role) == {"train", "val"}
    full = splits["holdout", "full"]
    assert (_per_class(index, full, "val") == 4).all()
    assert (_per_class(index, full, "train") == WRITERS * SAMPLES - 4).all()
    assert len(full) == len(index)
    small = splits["fraction", "small"]
    assert (_per_class(index, small, "train") == 4).all() and (_per_class(index, small, "val") == 1).all()
    all_fraction = splits["fraction", "full"]
    n = WRITERS * SAMPLES
    assert (_per_class(index, all_fraction, "train") == round(0.8 * n)).all()
    assert (_per_class(index, all_fraction, "val") == n - round(0.8 * n)).all()
    # writers are shared between train and val under the paper protocol (the study's gap)
    assert _writers(index, full, "train") & _writers(index, full, "val")


def test_too_large_request_named(index, tmp_path):
    cfg = json.loads(json.dumps(WRITER_CFG))
    cfg["schemes"]["holdout"]["train_per_class"]["huge"] = 25  # 24 train-writer images per class
    with pytest.raises(
        DataError, match=r"scheme holdout, size huge, class 1 \(零\), role train.*asked for 25.*only 24 available"
    ):
        make_splits(index, cfg, seed=0)
    cfg = json.loads(json.dumps(PAPER_CFG))
    cfg["schemes"]["fraction"]["per_class"]["big"] = 37
    with pytest.raises(DataError, match="size big.*asked for 37.*only 36"):
        make_splits(index, cfg, seed=0)
    cfg = json.loads(json.dumps(WRITER_CFG))
    cfg["schemes"]["holdout"]["val_per_class"] = 7  # 2 val writers x 3 samples = 6
    config_file = tmp_path / "subsets.json"
    config_file.write_text(json.dumps(cfg))
    index_path = tmp_path / "index.csv"
    index.to_csv(index_path, index=False)
    out = tmp_path / "splits"
    assert (
        main(["--index", str(index_path), "--config-json", str(config_file), "--seed", "1", "--out-dir", str(out)]) == 2
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.csv", "subsets.json"]


def test_bad_config_named(index):
    with pytest.raises(ConfigError, match="subsets.protocol"):
        make_splits(index, {**WRITER_CFG, "protocol": "random"}, seed=0)
    bad = json.loads(json.dumps(WRITER_CFG))
    bad["schemes"]["fraction"]["per_class"]["small"] = "some"
    with pytest.raises(ConfigError, match="subsets.schemes.fraction.per_class.small"):
        make_splits(index, bad, seed=0)
    with pytest.raises(ConfigError, match="test_writers"):
        make_splits(index, {**WRITER_CFG, "test_writers": 1.5}, seed=0)


def test_cli_writes_files_and_summary(index, tmp_path):
    index_path = tmp_path / "index.csv"
    index.to_csv(index_path, index=False)
    out = tmp_path / "splits"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hccr.data.subset",
            "--index",
            str(index_path),
            "--config-json",
            json.dumps(WRITER_CFG),
            "--seed",
            "5",
            "--out-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    expected = make_splits(index, WRITER_CFG, seed=5)
    for (scheme, size), table in expected.items():
        assert pd.read_csv(out / scheme / f"{size}.csv").equals(table)
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(summarize(expected, index, WRITER_CFG, 5), ensure_ascii=False))
    assert summary["schemes"]["holdout"]["small"]["counts"] == {"train": 75, "val": 60, "test": 90}
    assert summary["schemes"]["fraction"]["medium"]["per_class"]["val"]["亿"] == 2
    assert summary["writers"]["test"] == split_writers(index.writer.to_numpy(), WRITER_CFG, 5)["test"]
    # rewriting replaces the folder as a whole
    write_splits({("holdout", "small"): expected["holdout", "small"]}, {"x": 1}, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.csv")) == ["holdout/small.csv"]
