"""The real snakemake on the tiny synthetic config under `subsets.protocol: writer_cv` (3 folds),
end to end to the report's writer cross-validation section."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from hccr.reporting.formatting import pct

from helpers_workflow import describe, make_project, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

FOLDS = 3
CV = {
    "subsets": {"protocol": "writer_cv", "folds": FOLDS},
    "models": ["cnn"],
    "model": {"cnn": {"sizes": ["small"]}},
    "sweep": {"enabled": False},
    "writer_cv": {"models": ["cnn"], "sizes": ["small"]},
}
FOLD_DIR = "models/cv/cnn/small/fold{}"


@pytest.fixture(scope="module")
def cv_project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("cv_project"))
    (project / "cv.yaml").write_text(yaml.safe_dump(CV))
    proc = snakemake(project, "report", "--configfile", "tiny.yaml", "cv.yaml")
    assert proc.returncode == 0, describe(proc)
    return project


def test_every_writer_is_tested_once_and_holds_one_role_per_fold(cv_project):
    index = pd.read_csv(cv_project / "data/interim/index.csv")
    tested = []
    for fold in range(FOLDS):
        split = pd.read_csv(cv_project / f"data/processed/splits/cv/fold{fold}/holdout/small.csv")
        roles = split.merge(index, on="id").groupby("role")["writer"].apply(set)
        assert not roles["train"] & roles["val"] and not roles["train"] & roles["test"]
        assert not roles["val"] & roles["test"]
        tested += sorted(roles["test"])
    assert sorted(tested) == sorted(index["writer"].unique())


def test_summary_holds_each_folds_own_test_accuracy(cv_project):
    summary = json.loads((cv_project / "models/cv/summary.json").read_text())
    (entry,) = summary["runs"]
    folds = [
        json.loads((cv_project / FOLD_DIR.format(i) / "evaluation/metrics.json").read_text()) for i in range(FOLDS)
    ]
    accuracies = [m["test"]["accuracy"] for m in folds]
    assert [f["test_accuracy"] for f in entry["folds"]] == pytest.approx(accuracies)
    assert entry["test_accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert entry["test_accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
    per_writer = pd.read_csv(cv_project / "models/cv/per_writer.csv")
    assert per_writer["writer"].is_unique and per_writer["n"].sum() == sum(m["test"]["n"] for m in folds)


def test_report_shows_the_fold_mean_beside_the_single_split(cv_project):
    summary = json.loads((cv_project / "models/cv/summary.json").read_text())
    single = json.loads((cv_project / "reports/metrics/cnn/small.json").read_text())
    assert single["protocol"] == "writer"  # the grid's run keeps its one writer split
    report = (cv_project / "reports/report.md").read_text()
    assert "### Writer cross-validation" in report
    section = report.split("### Writer cross-validation", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| cnn/small | "))
    assert pct(single["test"]["accuracy"]) in row and pct(summary["runs"][0]["test_accuracy"]["mean"]) in row
    assert "figures/writer_cv/cnn/small.png" in section
    assert (cv_project / "reports/figures/writer_cv/cnn/small.png").stat().st_size > 0


def test_every_fold_job_leaves_a_log_and_a_benchmark(cv_project):
    for fold in range(FOLDS):
        for step in ("train", "evaluate"):
            assert (cv_project / f"logs/writer_cv/{step}/cnn/small/fold{fold}.log").exists()
            bench = pd.read_csv(cv_project / f"logs/benchmarks/writer_cv/{step}/cnn/small/fold{fold}.tsv", sep="\t")
            assert bench["s"].iloc[0] >= 0
    assert (cv_project / "logs/writer_cv/summary.log").exists()


def test_rerun_has_nothing_to_do(cv_project):
    proc = snakemake(cv_project, "report", "--configfile", "tiny.yaml", "cv.yaml", "-n")
    assert proc.returncode == 0, describe(proc)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_too_many_folds_stops_at_the_subset_step_naming_the_key(tmp_path):
    project = make_project(tmp_path / "many")
    (project / "cv.yaml").write_text(yaml.safe_dump({**CV, "subsets": {"protocol": "writer_cv", "folds": 50}}))
    proc = snakemake(project, "data", "--configfile", "tiny.yaml", "cv.yaml")
    assert proc.returncode != 0
    assert "subsets.folds: 50 folds but only 20 writer(s)" in (project / "logs/subset.log").read_text()
    assert not (project / "data/processed/splits").exists()  # nothing half-written


def test_other_protocols_write_an_empty_summary(tmp_path):
    project = make_project(tmp_path / "plain")
    proc = snakemake(project, "writer_cv", "--configfile", "tiny.yaml")
    assert proc.returncode == 0, describe(proc)
    assert json.loads((project / "models/cv/summary.json").read_text()) == {"folds": 0, "runs": []}
    assert not (project / "data/processed").exists()  # nothing was trained or even split for it
