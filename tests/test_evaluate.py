"""hccr.evaluation.evaluate: scoring with a model whose predictions the test controls, and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from hccr.data.layout import CHINESE_MNIST
from hccr.evaluation import evaluate

from helpers_data import CHARACTERS, NUM_CLASSES

SIZE = 8
MEAN, STD = 0.3, 0.2
# logit scale s = ln 42: the predicted class gets e^s / (e^s + 14) = 42 / 56 = 0.75
SCALE = math.log(42.0)
CONFIDENCE = 0.75


class ByBrightness(nn.Module):
    """Predicts class k for an image whose pixels are all 10k + 5 (undoing the normalisation)."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        raw = (x * STD + MEAN) * 255.0
        k = ((raw.mean(dim=(1, 2, 3)) - 5.0) / 10.0).round().long().clamp(0, NUM_CLASSES - 1)
        logits = torch.zeros(x.shape[0], NUM_CLASSES)
        logits[torch.arange(x.shape[0]), k] = SCALE
        return logits


def make_data(tmp_path: Path, with_test: bool = True):
    """60 images: ids 0-14 train, 15-44 val (2 per class), 45-59 test (1 per class).

    Val mistakes: both class-2 images are predicted 5, one class-7 image is predicted 8.
    Test mistakes: the class-0 image is predicted 14.
    """
    labels = list(range(15)) + list(range(15)) * 2 + list(range(15))
    roles = ["train"] * 15 + ["val"] * 30 + ["test"] * 15
    predicted = list(labels)
    val_ids = [i for i, r in enumerate(roles) if r == "val"]
    class2 = [i for i in val_ids if labels[i] == 2]
    class7 = [i for i in val_ids if labels[i] == 7]
    for i in class2:
        predicted[i] = 5
    predicted[class7[0]] = 8
    test0 = [i for i, r in enumerate(roles) if r == "test" and labels[i] == 0][0]
    predicted[test0] = 14
    n = len(labels)
    images = np.stack([np.full((SIZE, SIZE), 10 * k + 5, dtype=np.uint8) for k in predicted])
    index = pd.DataFrame(
        {
            "id": range(n),
            "writer": [i // 15 for i in range(n)],
            "sample": 1,
            "code": [label + 1 for label in labels],
            "value": 0,
            "character": [CHARACTERS[label] for label in labels],
            "label": labels,
            "path": [f"x{i}.jpg" for i in range(n)],
        }
    )
    split = pd.DataFrame({"id": range(n), "role": roles})
    if not with_test:
        split = split[split["role"] != "test"]
    paths = {"images": tmp_path / "images.npy", "index": tmp_path / "index.csv", "split": tmp_path / "split.csv"}
    np.save(paths["images"], images)
    index.to_csv(paths["index"], index=False)
    split.to_csv(paths["split"], index=False)
    return paths, index, split, np.array(predicted)


META = {
    "normalize": {"mean": MEAN, "std": STD},
    "input_size": SIZE,
    "start": "scratch",
    "epoch": 3,
    "characters": CHARACTERS,
}
SUMMARY = {
    "seconds_total": 12.5,
    "images_per_second": 100.0,
    "epochs": 4,
    "best_epoch": 3,
    "parameters": 3,
    "device": "cpu",
}


def test_scores_match_hand_computation(tmp_path):
    paths, index, split, _ = make_data(tmp_path)
    images = np.load(paths["images"], mmap_mode="r")
    results = evaluate.evaluate_run(ByBrightness(), META, images, index, split, batch_size=7, bins=15)
    assert set(results) == {"val", "test"}
    val, details, _ = results["val"]
    assert val["n"] == 30
    assert val["accuracy"] == pytest.approx(27 / 30)
    # per-class F1: class 2 never predicted -> 0; class 5 P=1/2 R=1 -> 2/3; class 7 P=1 R=1/2 -> 2/3;
    # class 8 P=2/3 R=1 -> 0.8; the other 11 classes 1
    assert val["macro_f1"] == pytest.approx((11 + 0 + 2 / 3 + 2 / 3 + 0.8) / 15)
    # correct images: -ln 0.75; wrong ones: the true class gets 1/56
    assert val["loss"] == pytest.approx((27 * -math.log(CONFIDENCE) + 3 * math.log(56)) / 30, rel=1e-5)
    assert val["ece"] == pytest.approx(abs(0.9 - CONFIDENCE), abs=1e-6)
    assert val["accuracy_ci_low"] < 0.9 < val["accuracy_ci_high"]
    assert details["per_class"][CHARACTERS[2]]["accuracy"] == 0.0
    assert details["per_class"][CHARACTERS[7]]["accuracy"] == 0.5
    assert details["per_class"][CHARACTERS[3]]["accuracy"] == 1.0
    assert details["confusion_matrix"][2][5] == 2
    assert details["top_confusions"][0] == {
        "true": 2,
        "predicted": 5,
        "true_character": CHARACTERS[2],
        "predicted_character": CHARACTERS[5],
        "count": 2,
    }
    assert details["top_confusions"][1]["count"] == 1
    test, _, _ = results["test"]
    assert test["n"] == 15 and test["accuracy"] == pytest.approx(14 / 15)


def test_build_outputs_shapes_the_three_artifacts(tmp_path):
    paths, index, split, predicted = make_data(tmp_path)
    images = np.load(paths["images"], mmap_mode="r")
    results = evaluate.evaluate_run(ByBrightness(), META, images, index, split)
    m, d, preds = evaluate.build_outputs(
        results, model_name="cnn", size="small", protocol="writer", meta=META, summary=SUMMARY, parameters=3
    )
    assert set(m) == {"model", "size", "protocol", "start", "start_source", "parameters", "val", "test", "train"}
    assert m["start"] == "scratch" and m["train"] == {
        "seconds_total": 12.5,
        "images_per_second": 100.0,
        "epochs": 4,
        "best_epoch": 3,
    }
    for role in ("val", "test"):
        assert set(m[role]) == {"accuracy", "macro_f1", "loss", "ece", "n", "accuracy_ci_low", "accuracy_ci_high"}
        assert all(isinstance(v, (int, float)) for v in m[role].values())
    json.dumps(d, allow_nan=False)  # details must be strict JSON
    assert list(preds.columns) == evaluate.PREDICTION_COLUMNS
    assert len(preds) == 45 and set(preds["role"]) == {"val", "test"}
    assert (preds["predicted"].to_numpy() == predicted[preds["id"].to_numpy()]).all()
    assert preds["confidence"].to_numpy() == pytest.approx(CONFIDENCE, abs=1e-6)
    wrong = preds[preds["true"] != preds["predicted"]]
    assert sorted(zip(wrong["true_character"], wrong["predicted_character"], strict=False)) == sorted(
        [(CHARACTERS[2], CHARACTERS[5])] * 2 + [(CHARACTERS[7], CHARACTERS[8]), (CHARACTERS[0], CHARACTERS[14])]
    )
    assert (preds["writer"].to_numpy() == preds["id"].to_numpy() // 15).all()


def test_predict_keeps_order_of_unsorted_ids(tmp_path):
    paths, *_ = make_data(tmp_path)
    images = np.load(paths["images"], mmap_mode="r")
    ids = np.array([44, 3, 17, 0, 30])
    logits = evaluate.predict(ByBrightness(), images, ids, MEAN, STD, batch_size=3)
    assert logits.argmax(axis=1).tolist() == [(int(images[i, 0, 0]) - 5) // 10 for i in ids]


def _cli_args(paths, out: Path, protocol="writer", summary=None, checkpoint=None):
    return [
        "--checkpoint",
        str(checkpoint or out / "missing.pt"),
        "--train-summary",
        str(summary or out / "train.json"),
        "--images",
        str(paths["images"]),
        "--index",
        str(paths["index"]),
        "--split",
        str(paths["split"]),
        "--protocol",
        protocol,
        "--model",
        "cnn",
        "--size",
        "small",
        "--batch-size",
        "16",
        "--bins",
        "10",
        "--out-metrics",
        str(out / "metrics" / "cnn" / "small.json"),
        "--out-details",
        str(out / "evaluation" / "cnn" / "small" / "details.json"),
        "--out-predictions",
        str(out / "evaluation" / "cnn" / "small" / "predictions.csv"),
    ]


def test_cli_rejects_bad_inputs_naming_the_file(tmp_path, capsys):
    paths, *_ = make_data(tmp_path, with_test=False)
    (tmp_path / "missing.pt").write_bytes(b"")  # exists, never loaded: the checks before it fail
    assert evaluate.main(_cli_args(paths, tmp_path)) == 2
    assert "train.json" in capsys.readouterr().err
    (tmp_path / "train.json").write_text(json.dumps(SUMMARY))
    assert evaluate.main(_cli_args(paths, tmp_path, protocol="writer")) == 2
    err = capsys.readouterr().err
    assert "split.csv" in err and "test rows" in err
    bad = pd.read_csv(paths["split"])
    bad.loc[3, "role"] = "holdout"
    bad.to_csv(paths["split"], index=False)
    assert evaluate.main(_cli_args(paths, tmp_path, protocol="paper")) == 2
    assert "row 5" in capsys.readouterr().err
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "evaluation").exists()


def test_cli_end_to_end_on_a_tiny_cnn_checkpoint(tmp_path):
    checkpoint_mod = pytest.importorskip("hccr.models.checkpoint")
    models = pytest.importorskip("hccr.models")
    if not hasattr(models, "create") or not hasattr(checkpoint_mod, "save"):
        pytest.skip("hccr.models.create / hccr.models.checkpoint.save not available yet")
    torch.manual_seed(0)
    cfg = {"arch": "cnn", "input_size": SIZE, "in_chans": 1, "width": [4, 8], "convs_per_block": 1, "dropout": 0.0}
    model, start = models.create("cnn", cfg, "none", num_classes=15)
    checkpoint_mod.save(
        tmp_path / "checkpoint.pt",
        classes=CHINESE_MNIST,
        model_name="cnn",
        config=cfg,
        input_size=SIZE,
        normalize={"mean": MEAN, "std": STD},
        start=start,
        epoch=1,
        val_accuracy=0.1,
        state_dict=model.state_dict(),
    )
    (tmp_path / "train.json").write_text(json.dumps(SUMMARY))
    paths, index, split, _ = make_data(tmp_path)
    args = _cli_args(paths, tmp_path, checkpoint=tmp_path / "checkpoint.pt", summary=tmp_path / "train.json")
    proc = subprocess.run(
        [sys.executable, "-m", "hccr.evaluation.evaluate", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "metrics" / "cnn" / "small.json").read_text())
    d = json.loads((tmp_path / "evaluation" / "cnn" / "small" / "details.json").read_text())
    preds = pd.read_csv(tmp_path / "evaluation" / "cnn" / "small" / "predictions.csv")
    assert m["start"] == start and m["protocol"] == "writer" and m["val"]["n"] == 30 and m["test"]["n"] == 15
    for role in ("val", "test"):
        rows = preds[preds["role"] == role]
        assert m[role]["accuracy"] == pytest.approx((rows["true"] == rows["predicted"]).mean())
        cm = np.array(d[role]["confusion_matrix"])
        assert cm.sum() == len(rows) and np.trace(cm) == (rows["true"] == rows["predicted"]).sum()
    assert preds["true"].tolist() == index.loc[preds["id"], "label"].tolist()
    # the model really ran on these images: its logits reproduce the written predictions
    loaded, meta = checkpoint_mod.load_model(tmp_path / "checkpoint.pt")
    images = np.load(paths["images"])
    logits = evaluate.predict(loaded, images, preds["id"].to_numpy(), MEAN, STD)
    assert logits.argmax(axis=1).tolist() == preds["predicted"].tolist()
    assert d["evaluation_precision"] == "float32"  # SUMMARY has no bf16 precision


def test_auto_precision_scores_a_run_the_way_it_trained(monkeypatch):
    import hccr.device

    cpu = torch.device("cpu")
    monkeypatch.setattr(hccr.device, "cpu_bf16_supported", lambda: True)
    assert evaluate.pick_precision("auto", {"precision": "bfloat16-autocast"}, cpu) is torch.bfloat16
    assert evaluate.pick_precision("auto", {"precision": "float32"}, cpu) is None
    assert evaluate.pick_precision("auto", {}, cpu) is None
    assert evaluate.pick_precision("bfloat16", {"precision": "float32"}, cpu) is torch.bfloat16
    assert evaluate.pick_precision("float32", {"precision": "bfloat16-autocast"}, cpu) is None
    monkeypatch.setattr(hccr.device, "cpu_bf16_supported", lambda: False)
    assert evaluate.pick_precision("auto", {"precision": "bfloat16-autocast"}, cpu) is None
    with pytest.raises(evaluate.HccrError, match="no native bf16"):
        evaluate.pick_precision("bfloat16", {}, cpu)


def test_bf16_scoring_runs_under_autocast_and_agrees_with_float32(tmp_path):
    # A model that records the dtype its linear layer computed in.
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(SIZE * SIZE, NUM_CLASSES)

        def forward(self, x):
            out = self.fc(x.flatten(1))
            seen.append(out.dtype)
            return out

    torch.manual_seed(0)
    model = Probe()
    images = np.random.default_rng(0).integers(0, 256, (40, SIZE, SIZE), dtype=np.uint8)
    ids = np.arange(40)
    full = evaluate.predict(model, images, ids, MEAN, STD, batch_size=16)
    assert set(seen) == {torch.float32}
    seen.clear()
    half = evaluate.predict(model, images, ids, MEAN, STD, batch_size=16, amp_dtype=torch.bfloat16)
    assert set(seen) == {torch.bfloat16} and half.dtype == np.float32
    np.testing.assert_allclose(half, full, atol=0.1)


def test_summary_parameters_reads_both_forms():
    assert evaluate.summary_parameters({"parameters": 12}) == 12
    assert evaluate.summary_parameters({"parameters": {"total": 34, "trainable_per_phase": []}}) == 34
    assert evaluate.summary_parameters({}) is None
