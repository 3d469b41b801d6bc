"""hccr.evaluation.metrics against cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hccr.evaluation import metrics

# 3 classes; class 2 is never predicted.
#   confusion (rows true): [[1, 1, 0], [0, 2, 0], [2, 0, 0]]
Y_TRUE = [0, 0, 1, 1, 2, 2]
Y_PRED = [0, 1, 1, 1, 0, 0]


def test_accuracy():
    assert metrics.accuracy(Y_TRUE, Y_PRED) == pytest.approx(3 / 6)
    assert metrics.accuracy(torch.tensor(Y_TRUE), torch.tensor(Y_PRED)) == pytest.approx(0.5)
    assert math.isnan(metrics.accuracy([], []))


def test_confusion_matrix_rows_are_true_classes():
    cm = metrics.confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [2, 0, 0]]
    assert metrics.confusion_matrix([0], [0], 4).shape == (4, 4)
    with pytest.raises(ValueError):
        metrics.confusion_matrix([0, 3], [0, 0], 3)


def test_macro_f1_counts_never_predicted_class_as_zero():
    # class 0: P=1/3 R=1/2 -> F1 0.4; class 1: P=2/3 R=1 -> 0.8; class 2: never predicted -> 0
    f1 = metrics.per_class_f1(Y_TRUE, Y_PRED, 3)
    assert f1 == pytest.approx([0.4, 0.8, 0.0])
    assert metrics.macro_f1(Y_TRUE, Y_PRED, 3) == pytest.approx(1.2 / 3)


def test_macro_f1_excludes_class_absent_from_truth():
    # class 2 is predicted once but never true: excluded; class 0 F1 = 2/3, class 1 F1 = 1
    assert metrics.macro_f1([0, 0, 1], [0, 2, 1], 3) == pytest.approx((2 / 3 + 1) / 2)
    assert math.isnan(metrics.per_class_f1([0, 0, 1], [0, 2, 1], 3)[2])


def test_per_class_accuracy():
    acc = metrics.per_class_accuracy(Y_TRUE, Y_PRED, 4)
    assert acc[:3] == pytest.approx([0.5, 1.0, 0.0])
    assert math.isnan(acc[3])


def test_top_confusions_orders_by_count_then_cell():
    cm = metrics.confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert metrics.top_confusions(cm, k=5) == [(2, 0, 2), (0, 1, 1)]
    assert metrics.top_confusions(cm, k=1) == [(2, 0, 2)]
    assert metrics.top_confusions(np.eye(3, dtype=int) * 7) == []


def test_losses_from_probabilities_and_logits_agree():
    probs = np.array([[0.5, 0.5], [0.25, 0.75]])
    expected = -(math.log(0.5) + math.log(0.75)) / 2
    assert metrics.log_loss([0, 1], probs) == pytest.approx(expected)
    logits = np.array([[0.0, 0.0], [0.0, math.log(3.0)]]) + 100.0  # shift must not matter
    assert metrics.cross_entropy_from_logits([0, 1], logits) == pytest.approx(expected)
    t = torch.tensor(logits, requires_grad=True)
    assert metrics.cross_entropy_from_logits(torch.tensor([0, 1]), t) == pytest.approx(
        torch.nn.functional.cross_entropy(t, torch.tensor([0, 1])).item()
    )
    assert metrics.softmax(logits) == pytest.approx(probs)


def test_expected_calibration_error_by_hand():
    conf = [0.9, 0.9, 0.6, 0.6]
    correct = [1, 0, 1, 1]
    # 5 bins: (0.8, 1] holds two at acc 0.5 conf 0.9 -> gap 0.4; (0.4, 0.6] two at acc 1, conf 0.6 -> 0.4
    assert metrics.expected_calibration_error(conf, correct, bins=5) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    table = metrics.calibration_table(conf, correct, bins=5)
    assert [row["n"] for row in table] == [0, 0, 2, 0, 2]
    # a confidence exactly on an edge (0.7 with 10 bins) belongs to the lower bin (0.6, 0.7]
    assert metrics.calibration_table([0.7], [1], bins=10)[6]["n"] == 1
    # perfectly calibrated: every sample at confidence 1 and correct
    assert metrics.expected_calibration_error([1.0, 1.0], [1, 1], bins=15) == pytest.approx(0.0)


def test_wilson_interval_by_hand():
    low, high = metrics.wilson_interval(8, 10)
    z = 1.959963984540054
    p, n = 0.8, 10
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    lo0, hi0 = metrics.wilson_interval(0, 20)
    assert lo0 == 0.0 and 0 < hi0 < 0.2
    lo1, hi1 = metrics.wilson_interval(20, 20)
    assert hi1 == 1.0 and 0.8 < lo1 < 1.0
    assert all(math.isnan(v) for v in metrics.wilson_interval(0, 0))
    with pytest.raises(ValueError):
        metrics.wilson_interval(5, 3)


# ---------------------------------------------------------------------------- large label sets


def test_top_k_accuracy_counts_true_class_among_the_k_best():
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    y = [2, 2, 0, 1]  # ranks of the truth: 2nd, 3rd, tied 2nd, tied 2nd
    assert metrics.top_k_accuracy(y, scores, 1) == 0.0
    assert metrics.top_k_accuracy(y, scores, 2) == 0.75
    assert metrics.top_k_accuracy(y, scores, 3) == 1.0
    assert metrics.top_k_accuracy(y, scores, 2, chunk=1) == 0.75
    with pytest.raises(ValueError, match="k must be >= 1"):
        metrics.top_k_accuracy(y, scores, 0)


def test_confused_pairs_match_top_confusions_and_merge_both_directions():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 7, 400)
    p = np.where(rng.random(400) < 0.6, t, rng.integers(0, 7, 400))
    cm = metrics.confusion_matrix(t, p, 7)
    assert metrics.confused_pairs(t, p, 12, 7) == metrics.top_confusions(cm, 12)
    merged = metrics.confused_pairs(t, p, 3, 7, symmetric=True)
    both = cm + cm.T
    for a, b, count in merged:
        assert a < b and count == both[a, b]
    assert merged[0][2] == max(both[a, b] for a in range(7) for b in range(a + 1, 7))


def test_class_counts_give_per_class_figures_at_thousands_of_classes():
    rng = np.random.default_rng(1)
    k = 3755
    t = rng.integers(0, k, 20000)
    p = np.where(rng.random(20000) < 0.9, t, rng.integers(0, k, 20000))
    support, hits, predicted = metrics.class_counts(t, p, k)
    assert support.sum() == hits.sum() + (t != p).sum() == predicted.sum() == 20000
    acc = metrics.per_class_accuracy(t, p, k)
    some = int(t[0])
    assert acc[some] == pytest.approx(np.mean(p[t == some] == some))


def test_max_softmax_and_blocked_cross_entropy_match_the_full_softmax():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (9000, 40)).astype(np.float32)  # more rows than one 4096 block
    y = rng.integers(0, 40, 9000)
    full = metrics.softmax(logits)
    np.testing.assert_allclose(metrics.max_softmax(logits), full.max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(metrics.max_softmax(logits, chunk=7), full.max(axis=1), rtol=1e-12)
    assert metrics.cross_entropy_from_logits(y, logits) == pytest.approx(metrics.log_loss(y, full), rel=1e-9)
