"""Two framings in the DAG (issue 14), by the real snakemake on the tiny synthetic config: a
cell-framed cnn and an ink-box-framed cnn_box, exported as their average (export.ensemble) and
cross-validated as one recipe over 3 writer folds (writer_cv.ensemble)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from hccr.models.checkpoint import load_model
from hccr.normalization import normalize
from hccr.reporting.formatting import pct
from hccr.serving.preprocess import FRAMINGS, canonical_glyph
from hccr.training.loader import compute_stats

from helpers_workflow import describe, make_project, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

FOLDS = 3
TINY_CNN = {
    "width": [8, 16],
    "batch_size": 32,
    "augment": {"views": 0.5},
    "phases": [{"name": "train", "epochs": 2, "lr": 3.0e-3, "freeze": "none"}],
    "scratch_phases": [{"name": "train", "epochs": 2, "lr": 3.0e-3, "freeze": "none"}],
}
PAIR = {
    "subsets": {"protocol": "writer_cv", "folds": FOLDS},
    "models": ["cnn", "cnn_box"],
    "model": {"cnn": {"sizes": ["small"]}, "cnn_box": {**TINY_CNN, "sizes": ["small"]}},
    "sweep": {"enabled": False},
    "export": {"ensemble": ["cnn/small", "cnn_box/small"]},
    "writer_cv": {"models": ["cnn", "cnn_box"], "sizes": ["small"], "ensemble": ["cnn", "cnn_box"]},
}
MEMBERS = {"cnn": "data/processed/images_64.npy", "cnn_box": "data/processed/ink_box/images_64.npy"}


@pytest.fixture(scope="module")
def pair_project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("pair_project"))
    (project / "pair.yaml").write_text(yaml.safe_dump(PAIR))
    proc = snakemake(project, "report", "robustness", "--configfile", "tiny.yaml", "pair.yaml", timeout=1500)
    assert proc.returncode == 0, describe(proc)
    return project


def test_the_ink_box_model_trains_on_the_archive_framed_by_its_ink_box(pair_project):
    native = np.load(pair_project / MEMBERS["cnn"])
    framed = np.load(pair_project / MEMBERS["cnn_box"])
    assert framed.shape == native.shape
    for row in range(0, len(native), 97):
        expected = canonical_glyph(Image.fromarray(native[row]), f"row {row}", FRAMINGS["ink_box"])
        assert np.array_equal(framed[row], expected), row
    split = pd.read_csv(pair_project / "data/processed/splits/holdout/small.csv")
    train_ids = split.loc[split["role"] == "train", "id"].to_numpy()
    for model, images in MEMBERS.items():
        summary = json.loads((pair_project / f"models/runs/{model}/small/train.json").read_text())
        # The run's normalisation is its own training images' statistics: the array it really read.
        assert summary["normalize"]["mean"] == pytest.approx(
            compute_stats(np.load(pair_project / images), train_ids)[0]
        )
    _, meta = load_model(pair_project / "models/runs/cnn_box/small/checkpoint.pt")
    assert meta["config"]["framing"] == "ink_box"
    views = json.loads((pair_project / "data/processed/ink_box/views_64.json").read_text())
    assert views["framing"] == "ink_box" and views["images"] == len(native)


def fold_mean_softmax(project, fold: int, ids: np.ndarray) -> np.ndarray:
    """Each member of the fold alone on its own array, their softmax averaged."""
    total = 0
    for model, images in MEMBERS.items():
        net, meta = load_model(project / f"models/cv/{model}/small/fold{fold}/checkpoint.pt")
        pixels = np.load(project / images)[ids]
        with torch.inference_mode():
            total = total + torch.softmax(net(normalize(pixels, **meta["normalize"])), dim=1).numpy()
    return total / len(MEMBERS)


def test_each_fold_scores_the_average_of_its_two_runs(pair_project):
    summary = json.loads((pair_project / "models/cv/summary.json").read_text())
    assert [(r["model"], r["size"]) for r in summary["runs"]] == [
        ("cnn", "small"),
        ("cnn_box", "small"),
        ("ensemble", "small"),
    ]
    index = pd.read_csv(pair_project / "data/interim/index.csv")
    ensemble = summary["runs"][2]
    for fold in range(FOLDS):
        split = pd.read_csv(pair_project / f"data/processed/splits/cv/fold{fold}/holdout/small.csv")
        ids = np.sort(split.loc[split["role"] == "test", "id"].to_numpy())
        expected = float(
            (fold_mean_softmax(pair_project, fold, ids).argmax(1) == index["label"].to_numpy()[ids]).mean()
        )
        assert ensemble["folds"][fold]["test_accuracy"] == pytest.approx(expected), fold
    report = (pair_project / "reports/report.md").read_text()
    assert "| ensemble/small | " in report.split("### Writer cross-validation", 1)[1]


def test_the_export_is_the_pair_and_predict_scores_it_as_its_arrays_do(pair_project):
    parity = json.loads((pair_project / "models/export/parity.json").read_text())
    assert parity["passed"] and [m["run"] for m in parity["members"]] == ["cnn/small", "cnn_box/small"]
    robustness = json.loads((pair_project / "reports/robustness/robustness.json").read_text())
    original = robustness["results"]["original"]
    assert original["n"] == parity["test_images"]
    # The files through predict's path and the arrays give the same accuracy (within one image:
    # predict resizes a file, the resize step decodes it).
    assert abs(original["accuracy"] - parity["test_accuracy"]) * original["n"] <= 1
    # The report gives the exported average its own row, beside its runs, and its summed cost.
    exported = (pair_project / "reports/report.md").read_text().split("### The exported model", 1)[1]
    average = f"| **average of the 2** (exported) | cell + ink_box | {pct(parity['val_accuracy'])} | "
    assert average + pct(parity["test_accuracy"]) in exported.split("## ", 1)[0]
    assert "| export: cnn/small + cnn_box/small | " in exported


def test_rerun_has_nothing_to_do(pair_project):
    proc = snakemake(pair_project, "-n", "report", "robustness", "--configfile", "tiny.yaml", "pair.yaml")
    assert proc.returncode == 0, describe(proc)
    assert "Nothing to be done" in proc.stdout + proc.stderr
