"""Confusion summary readable at 3,755 classes, and evaluate's scoring of a large label set."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hccr.classes import Classes
from hccr.data.casia import gb2312_level1
from hccr.data.layout import CHINESE_MNIST
from hccr.evaluation import confusion, metrics
from hccr.evaluation.evaluate import RolePredictions, score_role


def test_per_class_table_names_what_each_class_is_taken_for():
    chars = ["己", "已", "巳", "口"]
    y = [0, 0, 0, 0, 1, 1, 1, 2, 2]
    p = [0, 1, 1, 2, 1, 0, 1, 1, 2]
    table = confusion.per_class_table(y, p, chars)
    assert list(table["n"]) == [4, 3, 2, 0]
    assert list(table["correct"]) == [1, 2, 1, 0]
    assert list(table["taken_for"][:3]) == ["已", "己", "已"] and table["taken_for"][3] is None
    assert list(table["taken_for_count"]) == [2, 1, 1, 0]
    assert np.isnan(table["accuracy"][3])


def test_summary_pairs_and_hardest_classes():
    chars = ["己", "已", "巳", "口"]
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 3])
    p = np.array([0, 1, 1, 2, 1, 0, 1, 1, 2, 3])
    scores = np.eye(4)[p]
    out = confusion.summary(y, p, scores, chars, top=2)
    assert out["top5_accuracy"] == 1.0  # 4 classes: the truth is always among the 5 best
    assert out["most_confused"][0] == {
        "true": 0,
        "predicted": 1,
        "true_character": "己",
        "predicted_character": "已",
        "count": 2,
        "share_of_true": 0.5,
    }
    assert out["most_confused_pairs"][0] == {"a": 0, "b": 1, "a_character": "己", "b_character": "已", "count": 3}
    assert [c["character"] for c in out["hardest_classes"]] == ["己", "巳"]  # 25 %, then 50 %
    json.dumps(out)  # JSON-ready


def test_score_role_at_3755_classes_leaves_out_the_matrix_and_reports_top5():
    characters = gb2312_level1()
    k, n = len(characters), 3000
    rng = np.random.default_rng(0)
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k)).astype(np.float32)
    logits[np.arange(n), labels] += np.where(rng.random(n) < 0.6, 8.0, 1.5)  # ~60 % top-1
    classes = Classes(tuple(characters), (None,) * k)
    pred = RolePredictions(ids=np.arange(n), writers=np.full(n, 1241), labels=labels, logits=logits, classes=classes)
    scalars, details = score_role(pred, bins=10)
    assert scalars["top5_accuracy"] == pytest.approx(metrics.top_k_accuracy(labels, logits, 5))
    assert scalars["accuracy"] < scalars["top5_accuracy"] < 1.0
    assert details["confusion_matrix"] is None
    assert len(details["per_class"]) == k and details["per_class"]["啊"]["value"] is None
    summary = details["confusion_summary"]
    worst = summary["hardest_classes"][0]
    assert worst["accuracy"] == min(c["accuracy"] for c in details["per_class"].values() if c["n"])
    top = summary["most_confused"][0]
    assert top["count"] == int(np.sum((labels == top["true"]) & (logits.argmax(1) == top["predicted"])))
    assert len(json.dumps(details)) < 3_000_000  # readable size, not a 14 M-cell matrix


def test_score_role_at_15_classes_keeps_its_outputs():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 15, 200)
    logits = rng.normal(0, 1, (200, 15))
    logits[np.arange(200), labels] += 2
    pred = RolePredictions(
        ids=np.arange(200), writers=np.ones(200, int), labels=labels, logits=logits, classes=CHINESE_MNIST
    )
    scalars, details = score_role(pred, bins=10)
    assert set(scalars) == {"accuracy", "macro_f1", "loss", "ece", "n", "accuracy_ci_low", "accuracy_ci_high"}
    cm = np.array(details["confusion_matrix"])
    assert cm.shape == (15, 15) and cm.sum() == 200
    expected = metrics.top_confusions(cm, 10)
    assert [(c["true"], c["predicted"], c["count"]) for c in details["top_confusions"]] == expected
    assert details["per_class"][CHINESE_MNIST.characters[3]]["value"] == 3
    assert details["confusion_summary"]["top5_accuracy"] == metrics.top_k_accuracy(labels, logits, 5)


@pytest.mark.parametrize("cjk", [True, False])
def test_confusion_figure_of_a_large_label_set_draws_its_most_frequent_mistakes(tmp_path, cjk):
    from hccr.reporting import plots

    characters = gb2312_level1()
    classes = Classes(tuple(characters), (None,) * len(characters))
    rng = np.random.default_rng(3)
    y = rng.integers(0, 40, 500)
    p = np.where(rng.random(500) < 0.7, y, rng.integers(0, 40, 500))
    summary = confusion.summary(y, p, np.eye(len(characters))[p], characters, top=12)
    details = {
        "model": "cnn",
        "size": "full",
        **classes.to_meta(),
        "test": {"confusion_matrix": None, "confusion_summary": summary},
    }
    (tmp_path / "details.json").write_text(json.dumps(details, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "cm.png"
    argv = ["confusion", "--details", str(tmp_path / "details.json"), "--out", str(out)]
    assert plots.main(argv + ([] if cjk else ["--no-cjk-font"])) == 0
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
    data = pd.read_csv(out.with_suffix(".csv"))
    assert len(data) == 12 and list(data["count"]) == [m["count"] for m in summary["most_confused"]]
    font = plots.fonts.cjk_font(characters[:40]) if cjk else None
    labels = plots.fonts.class_labels(font, classes)
    fig = plots.mistakes_figure(summary["most_confused"], labels, title="t", font=font)
    top = summary["most_confused"][0]
    assert fig.axes[0].get_yticklabels()[0].get_text() == f"{labels[top['true']]}→{labels[top['predicted']]}"
