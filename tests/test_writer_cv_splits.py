"""hccr.data.subset under `writer_cv`: fold coverage, disjoint roles, determinism, errors, files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hccr.data.index import build_index
from hccr.data.subset import check_folds, fold_writers, main, make_fold_splits, make_splits
from hccr.errors import ConfigError, DataError

from helpers_data import SAMPLES, WRITERS, make_raw

# 12 writers x 3 samples; 4 folds of 3 test writers, round(0.2 * 9) = 2 val writers, 7 train.
CV_CFG = {
    "protocol": "writer_cv",
    "folds": 4,
    "test_writers": 0.2,
    "val_writers": 0.2,
    "schemes": {
        "holdout": {"val_per_class": 4, "train_per_class": {"small": 5, "full": "all"}},
        "fraction": {"per_class": {"small": 5, "full": "all"}, "train_fraction": 0.8},
    },
}


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> pd.DataFrame:
    raw = make_raw(tmp_path_factory.mktemp("raw") / "cm", writers=WRITERS, samples=SAMPLES)
    return build_index(raw)


def _roles_by_writer(index: pd.DataFrame, table: pd.DataFrame) -> dict[str, set[int]]:
    merged = table.merge(index[["id", "writer"]], on="id")
    return {role: set(merged.loc[merged.role == role, "writer"]) for role in ("train", "val", "test")}


def test_every_writer_is_tested_in_exactly_one_fold_and_has_one_role_per_fold(index):
    folds = make_fold_splits(index, CV_CFG, seed=5)
    assert sorted(folds) == [0, 1, 2, 3]
    tested: list[int] = []
    for tables in folds.values():
        assert set(tables) == {(s, z) for s in ("holdout", "fraction") for z in ("small", "full")}
        test_sets = set()
        for table in tables.values():
            roles = _roles_by_writer(index, table)
            assert roles["test"] and roles["val"] and roles["train"]
            assert not roles["train"] & roles["val"] and not roles["train"] & roles["test"]
            assert not roles["val"] & roles["test"]
            assert not table.id.duplicated().any() and table.id.is_monotonic_increasing
            test_sets.add(frozenset(roles["test"]))
        assert len(test_sets) == 1  # every scheme and size of a fold tests on the same writers
        tested += sorted(next(iter(test_sets)))
    assert sorted(tested) == sorted(index.writer.unique())  # each writer once, none left out


def test_fold_groups_are_balanced_and_every_test_image_of_the_group_is_tested(index):
    groups = fold_writers(index.writer.to_numpy(), {**CV_CFG, "folds": 5}, seed=5)
    sizes = sorted(len(g["test"]) for g in groups)
    assert sizes[-1] - sizes[0] <= 1 and sum(sizes) == WRITERS
    tables = make_fold_splits(index, {**CV_CFG, "folds": 5}, seed=5)
    for i, g in enumerate(groups):
        test = tables[i][("holdout", "full")].query("role == 'test'")
        assert len(test) == len(index[index.writer.isin(g["test"])])


def test_the_single_split_is_the_writer_protocols(index):
    single = make_splits(index, CV_CFG, seed=5)
    writer = make_splits(index, {**CV_CFG, "protocol": "writer"}, seed=5)
    assert set(single) == set(writer)
    for key in single:
        pd.testing.assert_frame_equal(single[key], writer[key])


def test_folds_are_deterministic_and_follow_the_seed(index):
    a, b = make_fold_splits(index, CV_CFG, seed=5), make_fold_splits(index, CV_CFG, seed=5)
    for fold in a:
        for key in a[fold]:
            pd.testing.assert_frame_equal(a[fold][key], b[fold][key])
    c = fold_writers(index.writer.to_numpy(), CV_CFG, seed=6)
    assert [g["test"] for g in c] != [g["test"] for g in fold_writers(index.writer.to_numpy(), CV_CFG, seed=5)]


def test_other_protocols_have_no_folds(index):
    assert make_fold_splits(index, {**CV_CFG, "protocol": "writer"}, seed=5) == {}


def test_more_folds_than_writers_names_the_key(index):
    with pytest.raises(DataError, match=r"subsets\.folds: 13 folds but only 12 writer"):
        make_fold_splits(index, {**CV_CFG, "folds": WRITERS + 1}, seed=5)


def test_a_fold_without_train_writers_names_the_key(index):
    with pytest.raises(DataError, match=r"subsets\.folds: fold 0 .* no train writer"):
        make_fold_splits(index, {**CV_CFG, "folds": 2, "val_writers": 0.95}, seed=5)


def test_fewer_than_two_folds_is_a_schema_error(index):
    with pytest.raises(ConfigError, match="folds"):
        make_fold_splits(index, {**CV_CFG, "folds": 1}, seed=5)


def test_check_folds_refuses_overlaps_and_gaps():
    writers = np.arange(1, 7)
    good = [
        {"test": [1, 2, 3], "val": [4], "train": [5, 6]},
        {"test": [4, 5, 6], "val": [1], "train": [2, 3]},
    ]
    check_folds(good, writers)
    with pytest.raises(DataError, match=r"writer\(s\) \[3\] are in more than one test fold"):
        check_folds([good[0], {**good[1], "test": [3, 4, 5, 6], "train": [2]}], writers)
    with pytest.raises(DataError, match=r"writer\(s\) \[6\] are in no test fold"):
        check_folds([good[0], {**good[1], "test": [4, 5], "train": [2, 3, 6]}], writers)
    with pytest.raises(DataError, match="fold 1: writer 2 is both train and val"):
        check_folds([good[0], {**good[1], "val": [1, 2]}], writers)


def test_cli_writes_every_fold_file_and_counts_that_match_them(index, tmp_path):
    index_path = tmp_path / "index.csv"
    index.to_csv(index_path, index=False)
    out = tmp_path / "splits"
    assert (
        main(["--index", str(index_path), "--config-json", json.dumps(CV_CFG), "--seed", "5", "--out-dir", str(out)])
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert [f["fold"] for f in summary["folds"]] == [0, 1, 2, 3]
    for entry in summary["folds"]:
        for scheme in ("holdout", "fraction"):
            for size in ("small", "full"):
                table = pd.read_csv(out / "cv" / f"fold{entry['fold']}" / scheme / f"{size}.csv")
                roles = _roles_by_writer(index, table)
                for role in ("train", "val", "test"):
                    counts = entry["counts"][scheme][size][role]
                    assert counts["images"] == int((table.role == role).sum())
                    assert counts["writers"] == len(roles[role])
                assert roles["test"] == set(entry["writers"]["test"])
    assert (out / "holdout" / "full.csv").exists()  # the single split beside the folds


def test_cli_error_names_the_key_and_writes_nothing(index, tmp_path, capsys):
    index_path = tmp_path / "index.csv"
    index.to_csv(index_path, index=False)
    out = tmp_path / "splits"
    cfg = json.dumps({**CV_CFG, "folds": 50})
    assert main(["--index", str(index_path), "--config-json", cfg, "--seed", "5", "--out-dir", str(out)]) == 2
    assert "subsets.folds" in capsys.readouterr().err
    assert not out.exists()
