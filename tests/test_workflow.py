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
    for scheme, sizes in {
        "holdout": ["small", "medium", "large", "full"],
        "fraction": ["small", "medium", "large", "full"],
    }.items():
        for size in sizes:
            split = pd.read_csv(data_project / f"data/processed/splits/{scheme}/{size}.csv")
            roles = split.merge(index, on="id").groupby("role")["writer"].apply(set)
            assert set(roles.index) == {"train", "val", "test"}
            assert not roles["train"] & roles["val"] and not roles["train"] & roles["test"]


def test_data_target_frames_the_views_of_a_model_that_trains_on_them(data_project):
    images = np.load(data_project / "data/processed/images_64.npy")
    views = np.load(data_project / "data/processed/views_64.npy")  # tiny.yaml's cnn: augment.views 0.5
    assert views.shape == images.shape and views.dtype == np.uint8
    summary = json.loads((data_project / "data/processed/views_64.json").read_text())
    assert sum(summary["families"].values()) == len(images)
    changed = (views != images).reshape(len(images), -1).any(axis=1)
    assert changed.mean() > 0.5  # most views differ from their file (an inverted one may frame back exactly)
    assert not (data_project / "data/processed/views_75.npy").exists()  # the 75-px models do not use views


def test_every_data_rule_leaves_a_log_and_a_benchmark(data_project):
    for rule in ("fetch", "index", "subset", "resize/64", "views/64"):
        assert (data_project / f"logs/{rule}.log").exists(), rule
        bench = pd.read_csv(data_project / f"logs/benchmarks/{rule}.tsv", sep="\t")
        assert bench["s"].iloc[0] >= 0


def test_rerun_has_nothing_to_do(data_project):
    proc = snakemake(data_project, "data", "--configfile", "tiny.yaml", "-n")
    assert proc.returncode == 0, describe(proc)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changed_seed_reruns_only_the_subsets(data_project):
    proc = snakemake(data_project, "data", "--configfile", "tiny.yaml", "--config", "seed=11", "-n", "--quiet", "rules")
    assert proc.returncode == 0, describe(proc)
    out = proc.stdout
    assert "subset" in out and "resize" not in out and "index" not in out


@pytest.fixture(scope="module")
def full_project(tmp_path_factory):
    """The whole DAG on the tiny config: both study models, the CNN, the sweep, the report."""
    project = make_project(tmp_path_factory.mktemp("full_project"))
    proc = snakemake(project, "--configfile", "tiny.yaml", timeout=1800)
    assert proc.returncode == 0, describe(proc)
    return project


def test_snakemake_trains_every_model_and_assembles_the_report(full_project):
    for model, size in [("efficientnet", "small"), ("inception_gru", "small"), ("cnn", "small"), ("cnn", "full")]:
        run = full_project / "models/runs" / model / size
        history = pd.read_csv(run / "history.csv")
        assert len(history) >= 1 and history["epoch"].is_monotonic_increasing
        summary = json.loads((run / "train.json").read_text())
        assert summary["start"] == "scratch"  # tiny.yaml asks for no pretrained weights
        # tiny.yaml's cnn trains on predict-path views, the other models do not
        views = {"share": 0.5, "file": "data/processed/views_64.npy"} if model == "cnn" else None
        assert summary["views"] == views
        metrics = json.loads((full_project / f"reports/metrics/{model}/{size}.json").read_text())
        assert 0.0 <= metrics["test"]["accuracy"] <= 1.0 and metrics["test"]["n"] == 2 * 3 * 15
        assert (full_project / f"reports/figures/curves/{model}/{size}.png").exists()
        assert (full_project / f"reports/plots/history/{model}_{size}.csv").exists()
    sweep = pd.read_csv(full_project / "models/sweep/summary.csv")
    assert len(sweep) == 2
    html = (full_project / "reports/report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64") >= 4
    for model in ("efficientnet", "inception_gru", "cnn"):
        assert model in (full_project / "reports/report.md").read_text(encoding="utf-8")


def test_snakemake_report_collects_the_figures_with_captions(full_project):
    proc = snakemake(full_project, "--configfile", "tiny.yaml", "--report", "reports/snakemake_report.html")
    assert proc.returncode == 0, describe(proc)
    assert (full_project / "reports/snakemake_report.html").stat().st_size > 10_000


def test_deleted_checkpoint_is_restored_without_retraining(full_project):
    run = full_project / "models/runs/cnn/small"
    history_before = (run / "history.csv").read_text()
    (run / "checkpoint.pt").unlink()
    proc = snakemake(full_project, "train", "--configfile", "tiny.yaml")
    assert proc.returncode == 0, describe(proc)
    assert (run / "checkpoint.pt").exists()
    assert (run / "history.csv").read_text() == history_before
