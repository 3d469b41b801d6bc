"""The real snakemake on a tiny synthetic config (tests/workflow/tiny.yaml)."""

import json

import numpy as np
import pandas as pd
import pytest

from helpers_workflow import describe, make_project, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


@pytest.fixture(scope="module")
def data_project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("data_project"))
    proc = snakemake(project, "data", "--configfile", "tiny.yaml")
    assert proc.returncode == 0, describe(proc)
    return project


def test_data_target_builds_index_arrays_and_splits(data_project):
    index = pd.read_csv(data_project / "data/interim/index.csv")
    assert len(index) == 20 * 3 * 15  # writers x samples x classes from tiny.yaml
    for size in (64, 75):  # native, and InceptionV3's input size in tiny.yaml
        images = np.load(data_project / f"data/processed/images_{size}.npy", mmap_mode="r")
        assert images.shape == (len(index), size, size) and images.dtype == np.uint8
    summary = json.loads((data_project / "data/processed/splits/summary.json").read_text())
    assert summary  # counts per scheme/size/role
    for scheme, sizes in {"holdout": ["small", "medium", "large", "full"],
                          "fraction": ["small", "medium", "large", "full"]}.items():
        for size in sizes:
            split = pd.read_csv(data_project / f"data/processed/splits/{scheme}/{size}.csv")
            roles = split.merge(index, on="id").groupby("role")["writer"].apply(set)
            assert set(roles.index) == {"train", "val", "test"}
            assert not roles["train"] & roles["val"] and not roles["train"] & roles["test"]


def test_every_data_rule_leaves_a_log_and_a_benchmark(data_project):
    for rule in ("fetch", "index", "subset", "resize/64"):
        assert (data_project / f"logs/{rule}.log").exists(), rule
        bench = pd.read_csv(data_project / f"logs/benchmarks/{rule}.tsv", sep="\t")
        assert bench["s"].iloc[0] >= 0


def test_rerun_has_nothing_to_do(data_project):
    proc = snakemake(data_project, "data", "--configfile", "tiny.yaml", "-n")
    assert proc.returncode == 0, describe(proc)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changed_seed_reruns_only_the_subsets(data_project):
    proc = snakemake(data_project, "data", "--configfile", "tiny.yaml", "--config", "seed=11", "-n",
                     "--quiet", "rules")
    assert proc.returncode == 0, describe(proc)
    out = proc.stdout
    assert "subset" in out and "resize" not in out and "index" not in out
