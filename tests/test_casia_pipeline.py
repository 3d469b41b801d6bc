"""CASIA-HWDB in the shared DAG: the official writer split, and `snakemake data` on a fixture corpus."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from hccr.data import casia_steps, subset
from hccr.data.index import read_index
from hccr.errors import DataError

from helpers_casia import CHARACTERS, WRITERS, corpus
from helpers_workflow import describe, make_project, snakemake

SUBSETS = {
    "protocol": "official",
    "test_writers": 0.1,
    "val_writers": 0.2,
    "schemes": {
        # tests/workflow/tiny.yaml's ladder sizes, within 5 train writers x 3 samples per class
        "holdout": {"val_per_class": 2, "train_per_class": {"small": 2, "medium": 4, "large": 8, "full": "all"}},
        "fraction": {"per_class": {"small": 4, "medium": 5, "large": 10, "full": "all"}, "train_fraction": 0.8},
    },
}


@pytest.fixture(scope="module")
def casia_index(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("casia")
    corpus(root / "gnt", samples=3)
    casia_steps.fetch(root / "gnt", root / "raw", progress=False)
    table, _ = casia_steps.build_index(root / "raw", progress=False)
    table.to_csv(root / "index.csv", index=False)
    return read_index(root / "index.csv")


def test_official_split_tests_on_writers_1241_to_1300(casia_index):
    splits = subset.make_splits(casia_index, SUBSETS, seed=5)
    groups = subset.split_writers(casia_index["writer"].to_numpy(), subset.check_config(SUBSETS), seed=5)
    assert groups["test"] == [1241, 1242]
    assert len(groups["val"]) == 1 and set(groups["val"]) | set(groups["train"]) == set(WRITERS) - {1241, 1242}
    writer = dict(zip(casia_index["id"], casia_index["writer"], strict=False))
    label = dict(zip(casia_index["id"], casia_index["label"], strict=False))
    for (_scheme, _size), table in splits.items():
        roles = {r: table.loc[table["role"] == r, "id"] for r in ("train", "val", "test")}
        assert set(roles["test"].map(writer)) == {1241, 1242}
        assert len(roles["test"]) == 2 * CHARACTERS * 3
        assert set(roles["val"].map(writer)) == set(groups["val"])
        assert set(roles["train"].map(writer)) <= set(groups["train"])
        per_class = roles["train"].map(label).value_counts()
        assert len(per_class) == CHARACTERS and per_class.nunique() == 1  # every class equally
    assert len(splits[("holdout", "small")].query("role == 'train'")) == 2 * CHARACTERS
    summary = subset.summarize(splits, casia_index, SUBSETS, seed=5)
    assert summary["protocol"] == "official" and summary["writers"]["test"] == [1241, 1242]
    assert list(summary["schemes"]["holdout"]["full"]["per_class"]["test"]) == list(
        casia_index.drop_duplicates("label")["character"]
    )


def test_official_split_needs_test_writers(casia_index):
    no_test = casia_index[casia_index["writer"] < 1241].reset_index(drop=True)
    no_test["id"] = np.arange(len(no_test))
    with pytest.raises(DataError, match=r"official protocol: 0 test writer\(s\) \(1241-1300\)"):
        subset.make_splits(no_test, SUBSETS, seed=5)


@pytest.mark.workflow
@pytest.mark.slow
def test_snakemake_data_target_on_a_casia_source(tmp_path):
    src = corpus(tmp_path / "hwdb", samples=3)
    project = make_project(tmp_path / "project")
    config = project / "casia.yaml"
    config.write_text(
        json.dumps(
            {
                "data_source": f"casia-hwdb:{src}",
                "resize": {"sizes": [32]},
                "subsets": SUBSETS,
                "casia": {"label_set": "level1", "margin": 0.1},
            }
        ),
        encoding="utf-8",
    )
    proc = snakemake(project, "data", "--configfile", "tiny.yaml", "casia.yaml")
    assert proc.returncode == 0, describe(proc)
    index = read_index(project / "data" / "interim" / "index.csv")
    assert len(index) == len(WRITERS) * CHARACTERS * 3 and index["label"].nunique() == CHARACTERS
    source = json.loads((project / "data" / "raw" / "casia-hwdb" / "SOURCE.json").read_text(encoding="utf-8"))
    assert source["kind"] == "casia-hwdb" and source["counts"]["records"] == len(index)
    assert not (project / "data" / "raw" / "chinese-mnist").exists()
    for size in (32, 64, 75):  # resize.sizes plus every model's input size, as for Chinese MNIST
        images = np.load(project / "data" / "processed" / f"images_{size}.npy", mmap_mode="r")
        assert images.shape == (len(index), size, size)
    summary = json.loads((project / "data" / "processed" / "splits" / "summary.json").read_text(encoding="utf-8"))
    assert summary["writers"]["test"] == [1241, 1242]
    assert (project / "logs" / "casia" / "index.log").exists()
    again = snakemake(project, "data", "-n", "--configfile", "tiny.yaml", "casia.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, describe(again)


@pytest.mark.workflow
def test_casia_profile_plans_the_benchmark_runs(tmp_path):
    project = make_project(tmp_path / "project")
    proc = snakemake(
        project,
        "-n",
        "--quiet",
        "rules",
        "--profile",
        str(project / "workflow/profiles/casia"),
        "--config",
        f"data_source=casia-hwdb:{tmp_path / 'hwdb'}",
    )
    assert proc.returncode == 0, describe(proc)
    table = proc.stdout.split("Job stats:", 1)[1]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    assert counts["casia_fetch"] == counts["casia_index"] == 1 and "fetch" not in counts
    assert counts["casia_resize"] == 2  # 64 px (cnn) and 96 px (EfficientNetV2-S); never 299
    assert counts["train_run"] == 2 and "sweep_run" not in counts


@pytest.mark.workflow
@pytest.mark.slow
def test_snakemake_trains_and_scores_a_cnn_on_a_casia_source(tmp_path):
    """fetch -> index -> resize -> subset -> train -> evaluate, classes from the CASIA index."""
    src = corpus(tmp_path / "hwdb", samples=3)
    project = make_project(tmp_path / "project")
    (project / "casia.yaml").write_text(
        json.dumps(
            {
                "data_source": f"casia-hwdb:{src}",
                "resize": {"sizes": [32]},
                "subsets": SUBSETS,
                "models": ["cnn"],
                "sizes": ["small"],
                "sweep": {"enabled": False},
                "model": {"cnn": {"sizes": ["small"], "input_size": 32}},
            }
        ),
        encoding="utf-8",
    )
    proc = snakemake(project, "evaluate", "--configfile", "tiny.yaml", "casia.yaml")
    assert proc.returncode == 0, describe(proc)
    metrics = json.loads((project / "reports" / "metrics" / "cnn" / "small.json").read_text(encoding="utf-8"))
    assert metrics["protocol"] == "official"
    assert metrics["test"]["n"] == 2 * CHARACTERS * 3  # writers 1241 and 1242, every record
    details = json.loads(
        (project / "reports" / "evaluation" / "cnn" / "small" / "details.json").read_text(encoding="utf-8")
    )
    index = read_index(project / "data" / "interim" / "index.csv")
    classes = index.drop_duplicates("label").sort_values("label")["character"].tolist()
    assert list(details["test"]["per_class"]) == classes
    summary = details["test"]["confusion_summary"]
    assert summary["top5_accuracy"] >= details["test"]["accuracy"]
    assert np.array(details["test"]["confusion_matrix"]).shape == (CHARACTERS, CHARACTERS)
