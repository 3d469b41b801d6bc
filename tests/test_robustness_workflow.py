"""The robustness rule, run by the real snakemake on the tiny synthetic config (one CNN run)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from hccr.evaluation.transforms import TRANSFORMS

from helpers_workflow import TINY, deep_merge, describe, make_project, snakemake


@pytest.fixture(scope="module")
def robustness_project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("robustness"))
    tiny = yaml.safe_load(TINY.read_text())
    settings = deep_merge(
        tiny,
        {
            "models": ["cnn"],
            "model": {"cnn": {"sizes": ["small"]}},
            "sweep": {"enabled": False},
            "robustness": {"enabled": True, "transforms": {"jpeg": {"quality": 30}}},
        },
    )
    (project / "tiny.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True))
    proc = snakemake(project, "robustness", "--configfile", "tiny.yaml", timeout=1200)
    assert proc.returncode == 0, describe(proc)
    return project


def test_the_rule_scores_every_transform_on_every_test_image(robustness_project):
    details = json.loads((robustness_project / "reports/robustness/robustness.json").read_text())
    split = pd.read_csv(robustness_project / "data/processed/splits/holdout/small.csv")
    n_test = int((split["role"] == "test").sum())
    assert details["n"] == n_test > 0
    assert list(details["results"]) == list(TRANSFORMS)  # every transform on by default, in order
    assert details["settings"]["transforms"]["jpeg"]["quality"] == 30  # params reach the step
    assert details["settings"]["transforms"]["shifted"]["shift"] == [8, -6]  # schema defaults filled in
    for name, result in details["results"].items():
        assert result["n"] == n_test
        assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 < result["mcnemar_p"] <= 1.0
        agree = round(result["accuracy"] * n_test) - round(details["results"]["original"]["accuracy"] * n_test)
        assert agree == result["only_transformed_right"] - result["only_original_right"], name
    assert details["results"]["original"]["mcnemar_p"] == 1.0


def test_untransformed_accuracy_is_the_evaluation_of_the_exported_run(robustness_project):
    # The export holds the one run (cnn/small); its ONNX file through predict's path scores the
    # untransformed test images as the evaluate step scored them with the checkpoint.
    details = json.loads((robustness_project / "reports/robustness/robustness.json").read_text())
    metrics = json.loads((robustness_project / "reports/metrics/cnn/small.json").read_text())
    n = details["n"]
    assert abs(details["results"]["original"]["accuracy"] - metrics["test"]["accuracy"]) * n <= 1


def test_metrics_and_figure_are_written(robustness_project):
    metrics = json.loads((robustness_project / "reports/robustness/metrics.json").read_text())
    assert set(metrics) == set(TRANSFORMS)
    assert all(set(m) == {"accuracy", "delta_points", "mcnemar_p"} for m in metrics.values())
    figure = np.asarray(Image.open(robustness_project / "reports/robustness/examples.png").convert("L"))
    assert figure.shape[0] >= len(TRANSFORMS) * 96 and figure.std() > 10  # one row per transform, not blank


def test_off_switch_removes_the_rule(robustness_project):
    proc = snakemake(
        robustness_project,
        "robustness",
        "--configfile",
        "tiny.yaml",
        "-n",
        "--forceall",
        "--config",
        "robustness={'enabled': False}",
    )
    assert proc.returncode == 0, describe(proc)
    assert "robustness_evaluate" not in proc.stdout
