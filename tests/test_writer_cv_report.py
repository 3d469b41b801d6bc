"""Writer cross-validation's summary (hccr.evaluation.writer_cv), figure and report section
(hccr.reporting.writer_cv), from fold evaluations written by hccr.evaluation.evaluate itself."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hccr.atomic import write_json
from hccr.data.layout import CHINESE_MNIST
from hccr.errors import DataError
from hccr.evaluation import evaluate
from hccr.evaluation import writer_cv as cv
from hccr.reporting import report_data as rd
from hccr.reporting import report_render as rr
from hccr.reporting import writer_cv as cv_report
from hccr.reporting.formatting import pct

FOLDS = 3
P_CORRECT = (0.90, 0.70, 0.80)  # per fold: how often the fake model is right
WRITERS_PER_FOLD = 4
IMAGES_PER_WRITER = 15


def fold_predictions(rng, fold: int, role: str, first_id: int) -> evaluate.RolePredictions:
    n = WRITERS_PER_FOLD * IMAGES_PER_WRITER
    labels = np.arange(n) % 15
    right = rng.random(n) < P_CORRECT[fold]
    predicted = np.where(right, labels, (labels + 1 + rng.integers(0, 14, n)) % 15)
    logits = rng.normal(0, 0.1, (n, 15))
    logits[np.arange(n), predicted] += 3.0
    base = 100 * fold + (0 if role == "test" else 50)  # test writers differ per fold
    writers = np.repeat(np.arange(base, base + WRITERS_PER_FOLD), IMAGES_PER_WRITER)
    return evaluate.RolePredictions(
        ids=np.arange(first_id, first_id + n), writers=writers, labels=labels, logits=logits, classes=CHINESE_MNIST
    )


def write_fold(cv_dir: Path, model: str, size: str, fold: int) -> None:
    rng = np.random.default_rng(fold)
    results = {}
    for role, first in (("val", 0), ("test", 60)):
        pred = fold_predictions(rng, fold, role, first + 120 * fold)
        scalars, details = evaluate.score_role(pred, bins=5)
        results[role] = (scalars, details, pred)
    meta = {"start": "scratch", "epoch": 2, "input_size": 16, **CHINESE_MNIST.to_meta()}
    metrics, details, predictions = evaluate.build_outputs(
        results, model_name=model, size=size, protocol="writer", meta=meta, summary={}, parameters=10
    )
    folder = cv.fold_dir(cv_dir, model, size, fold) / "evaluation"
    write_json(folder / "metrics.json", metrics)
    write_json(folder / "details.json", details)
    predictions.to_csv(folder / "predictions.csv", index=False)


@pytest.fixture
def cv_dir(tmp_path) -> Path:
    for fold in range(FOLDS):
        write_fold(tmp_path / "cv", "cnn", "full", fold)
    return tmp_path / "cv"


def expected_accuracies(cv_dir: Path) -> list[float]:
    """Each fold's test accuracy recomputed from its predictions.csv."""
    out = []
    for fold in range(FOLDS):
        p = pd.read_csv(cv.fold_dir(cv_dir, "cnn", "full", fold) / "evaluation" / "predictions.csv")
        test = p[p.role == "test"]
        out.append(float((test.true == test.predicted).mean()))
    return out


def test_summary_statistics_come_from_the_folds(cv_dir):
    summary, table = cv.summarize(cv_dir, [("cnn", "full")], FOLDS)
    accuracies = expected_accuracies(cv_dir)
    assert len(set(accuracies)) == FOLDS  # the folds really differ, so the spread means something
    entry = summary["runs"][0]
    assert [f["test_accuracy"] for f in entry["folds"]] == pytest.approx(accuracies)
    s = entry["test_accuracy"]
    assert s["mean"] == pytest.approx(np.mean(accuracies))
    assert s["std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert (s["min"], s["max"]) == pytest.approx((min(accuracies), max(accuracies)))
    low, high = stats.t.interval(0.95, FOLDS - 1, loc=np.mean(accuracies), scale=stats.sem(accuracies))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((low, high))
    assert entry["writers"] == FOLDS * WRITERS_PER_FOLD
    assert entry["pooled_test_accuracy"] == pytest.approx(np.mean(accuracies))  # equal-sized folds


def test_per_writer_table_counts_each_test_writer_of_each_fold(cv_dir):
    _, table = cv.summarize(cv_dir, [("cnn", "full")], FOLDS)
    assert list(table.columns) == cv.PER_WRITER_COLUMNS
    assert len(table) == FOLDS * WRITERS_PER_FOLD and not table["writer"].duplicated().any()
    p = pd.read_csv(cv.fold_dir(cv_dir, "cnn", "full", 1) / "evaluation" / "predictions.csv")
    p = p[(p.role == "test") & (p.writer == 101)]
    row = table[(table.fold == 1) & (table.writer == 101)].iloc[0]
    assert (row.n, row.correct) == (len(p), int((p.true == p.predicted).sum()))
    assert set(table.loc[table.fold == 0, "writer"]) == {0, 1, 2, 3}  # test writers only, never val


def test_a_fold_without_test_results_is_named(cv_dir):
    path = cv.fold_dir(cv_dir, "cnn", "full", 2) / "evaluation" / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["test"]
    path.write_text(json.dumps(metrics))
    with pytest.raises(DataError, match=r"fold2/evaluation/metrics.json: no test accuracy"):
        cv.summarize(cv_dir, [("cnn", "full")], FOLDS)


def test_metrics_and_predictions_that_disagree_are_refused(cv_dir):
    path = cv.fold_dir(cv_dir, "cnn", "full", 0) / "evaluation" / "predictions.csv"
    p = pd.read_csv(path)
    p.drop(index=p.index[p.role == "test"][:3]).to_csv(path, index=False)
    with pytest.raises(DataError, match="fold0/evaluation: metrics.json counts 60 test images, predictions.csv 57"):
        cv.summarize(cv_dir, [("cnn", "full")], FOLDS)


def test_cli_without_runs_writes_empty_outputs(tmp_path):
    summary, per_writer = tmp_path / "summary.json", tmp_path / "per_writer.csv"
    args = [
        "--cv-dir",
        str(tmp_path),
        "--folds",
        "0",
        "--out-summary",
        str(summary),
        "--out-per-writer",
        str(per_writer),
    ]
    assert cv.main(args) == 0
    assert json.loads(summary.read_text()) == {"folds": 0, "runs": []}
    assert list(pd.read_csv(per_writer).columns) == cv.PER_WRITER_COLUMNS and pd.read_csv(per_writer).empty


def test_cli_missing_fold_is_an_error_naming_the_file(cv_dir, tmp_path, capsys):
    out = ["--out-summary", str(tmp_path / "s.json"), "--out-per-writer", str(tmp_path / "w.csv")]
    assert cv.main(["--cv-dir", str(cv_dir), "--run", "cnn/full", "--folds", str(FOLDS + 1), *out]) == 2
    assert "fold3/evaluation/metrics.json: fold metrics not found" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()


def _write_summary(cv_dir: Path) -> dict:
    assert (
        cv.main(
            ["--cv-dir", str(cv_dir), "--run", "cnn/full", "--folds", str(FOLDS)]
            + ["--out-summary", str(cv_dir / "summary.json"), "--out-per-writer", str(cv_dir / "per_writer.csv")]
        )
        == 0
    )
    return json.loads((cv_dir / "summary.json").read_text())


def test_figure_marks_the_hardest_writers(cv_dir, tmp_path):
    _write_summary(cv_dir)
    images = np.random.default_rng(0).integers(0, 255, (500, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    out = tmp_path / "fig" / "cnn" / "full.png"
    folds = [cv.fold_dir(cv_dir, "cnn", "full", f) / "evaluation" for f in range(FOLDS)]
    args = ["figure", "--model", "cnn", "--size", "full", "--per-writer", str(cv_dir / "per_writer.csv")]
    args += ["--predictions", *[str(f / "predictions.csv") for f in folds], "--details", str(folds[0] / "details.json")]
    args += ["--images", str(tmp_path / "images.npy"), "--out", str(out), "--no-cjk-font"]
    assert cv_report.main(args) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = pd.read_csv(out.with_suffix(".csv"))
    hardest = data[data.hardest]
    assert len(hardest) == cv_report.HARDEST
    assert hardest.accuracy.max() <= data.loc[~data.hardest, "accuracy"].min()


def test_misread_examples_take_only_the_writers_test_mistakes():
    p = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "writer": [7, 7, 7, 8, 9],
            "role": ["test", "test", "val", "test", "test"],
            "true": [0, 1, 2, 3, 4],
            "predicted": [1, 1, 0, 0, 0],
            "confidence": [0.5, 0.9, 0.9, 0.8, 0.7],
        }
    )
    assert cv_report.misread_examples(p, [8, 7], per_writer=6)["id"].tolist() == [4, 1]


def _inputs(tmp_path: Path, cv_dir: Path, protocol: str, single: float | None) -> SimpleNamespace:
    runs = []
    if single is not None:
        runs.append(rd.Run("cnn", "full", {"test": {"accuracy": single}}, None, None, None))
    return SimpleNamespace(
        params={"subsets": {"protocol": protocol}}, writer_cv_dir=cv_dir, runs=runs, figures_dir=tmp_path / "figs"
    )


def test_report_section_shows_fold_numbers_beside_the_single_split(cv_dir, tmp_path):
    summary = _write_summary(cv_dir)
    doc = rr.Document("t")
    cv_report.section(doc, _inputs(tmp_path, cv_dir, "writer_cv", 0.8123))
    text = rr.to_markdown(doc, tmp_path)
    s = summary["runs"][0]["test_accuracy"]
    row = next(line for line in text.splitlines() if line.startswith("| cnn/full"))
    for value in (0.8123, s["mean"], s["std"]):
        assert pct(value) in row
    assert f"{pct(s['min'])} – {pct(s['max'])}" in row and f"{pct(s['ci_low'])} – {pct(s['ci_high'])}" in row
    table = pd.read_csv(cv_dir / "per_writer.csv")
    worst = table.sort_values(["accuracy", "n", "writer"]).iloc[0]
    assert f"writer {int(worst.writer)} (fold {int(worst.fold)}): {pct(worst.accuracy)}" in text
    assert "No writer cross-validation figure for cnn/full" in text  # none drawn in this test


def test_report_section_is_absent_under_other_protocols_and_says_when_results_are_missing(cv_dir, tmp_path):
    doc = rr.Document("t")
    cv_report.section(doc, _inputs(tmp_path, cv_dir, "writer", 0.8))
    assert doc.blocks == []
    cv_report.section(doc, _inputs(tmp_path, tmp_path / "nowhere", "writer_cv", 0.8))
    assert "No writer cross-validation results" in rr.to_markdown(doc, tmp_path)
