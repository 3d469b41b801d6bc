"""`hccr export`: run selection, ONNX export with metadata, parity on real images, model card."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from PIL import Image

from hccr.data.layout import CHINESE_MNIST
from hccr.errors import ConfigError, DataError, HccrError
from hccr.models import create
from hccr.normalization import normalize
from hccr.reporting.model_card import render_model_card
from hccr.serving.export import main as export_main
from hccr.serving.export import select_run
from hccr.serving.onnx_meta import metadata_from_props, metadata_props
from hccr.serving.predict import main as predict_main
from hccr.serving.preprocess import glyph_to_size
from test_predict import archive_index, read_archive, save_checkpoint, train_small_cnn

from helpers_data import CHARACTERS

TINY_CNN = {
    "arch": "cnn",
    "scheme": "holdout",
    "width": [8, 16, 32],
    "convs_per_block": 1,
    "dropout": 0.1,
    "input_size": 32,
    "in_chans": 1,
    "batch_size": 64,
    "optimizer": {"name": "adamw", "weight_decay": 1e-4},
    "phases": [{"name": "train", "epochs": 6, "lr": 3e-3, "freeze": "none"}],
}


def write_metrics(path: Path, model: str, size: str, val: dict, test: dict | None = None) -> Path:
    data = {"model": model, "size": size, "protocol": "writer", "start": "scratch", "parameters": 1, "val": val}
    if test is not None:
        data["test"] = test
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_select_run_by_each_metric(tmp_path, capsys):
    a = write_metrics(
        tmp_path / "cnn" / "small.json", "cnn", "small", {"accuracy": 0.90, "loss": 0.40}, {"accuracy": 0.80}
    )
    b = write_metrics(
        tmp_path / "cnn" / "large.json", "cnn", "large", {"accuracy": 0.95, "loss": 0.45}, {"accuracy": 0.70}
    )
    c = write_metrics(
        tmp_path / "efficientnet" / "small.json", "efficientnet", "small", {"accuracy": 0.85, "loss": 0.30}
    )  # paper-like: no test
    paths = [a, b, c]
    assert select_run(paths, "val_accuracy")[0].size == "large"
    assert select_run(paths, "val_loss")[0].model == "efficientnet"
    best, candidates = select_run(paths, "test_accuracy")
    assert (best.model, best.size) == ("cnn", "small") and len(candidates) == 2
    assert "no finite test.accuracy" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="export.select"):
        select_run(paths, "accuracy")
    with pytest.raises(DataError, match="test.accuracy"):
        select_run([c], "test_accuracy")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        select_run([bad], "val_accuracy")


def test_metadata_round_trip_and_missing_metadata():
    meta = {
        "model": "cnn",
        "input_size": 48,
        "normalize": {"mean": 0.0612345678901, "std": 0.1712345678901},
        **CHINESE_MNIST.to_meta(),
        "start": "scratch",
        "epoch": 3,
        "val_accuracy": 0.9,
    }
    back = metadata_from_props(metadata_props(meta, "bicubic"))
    assert back["input_size"] == 48 and back["classes"] == CHINESE_MNIST and back["resize_filter"] == "bicubic"
    assert back["mean"] == meta["normalize"]["mean"] and back["std"] == meta["normalize"]["std"]  # exact
    with pytest.raises(HccrError, match="lacks hccr metadata"):
        metadata_from_props({"hccr.mean": "0.1"}, "x.onnx")


def test_model_card_says_how_the_weights_started():
    meta = {
        "model": "efficientnet",
        "input_size": 64,
        "normalize": {"mean": 0.06, "std": 0.17},
        "config": {
            "arch": "tf_efficientnetv2_s",
            "batch_size": 32,
            "optimizer": {"name": "adam"},
            "pretrained": "auto",
            "phases": [{"name": "head", "epochs": 10, "lr": 1e-4, "freeze": "all"}],
            "scratch_phases": [{"name": "scratch", "epochs": 20, "lr": 1e-3, "freeze": "none"}],
        },
        "start": "scratch",
        "epoch": 7,
        **CHINESE_MNIST.to_meta(),
    }
    metrics = {
        "model": "efficientnet",
        "size": "small",
        "protocol": "writer",
        "val": {"accuracy": 0.9, "accuracy_ci_low": 0.88, "accuracy_ci_high": 0.92, "n": 1050},
        "test": {"accuracy": 0.875, "accuracy_ci_low": 0.85, "accuracy_ci_high": 0.9, "n": 1350},
    }
    counts = {
        "train": {"images": 1050, "writers": 72},
        "val": {"images": 1050, "writers": 9},
        "test": {"images": 1350, "writers": 9},
    }
    card = render_model_card(meta, metrics, parameters=21_000_000, split_counts=counts, total_writers=90)
    assert "trained from scratch — no ImageNet pretraining" in card and "`pretrained: auto` was asked for" in card
    chosen = render_model_card(dict(meta, config=dict(meta["config"], pretrained="none")), metrics, parameters=1)
    assert "trained from scratch, by choice" in chosen and "no weights could be had" not in chosen
    assert "| scratch | 20 |" in card and "| head |" not in card  # the phases a scratch run really used
    assert "87.50 %" in card and "85.00 % – 90.00 %" in card
    assert "| test | 1350 | 9 |" in card and "90 writers" in card
    assert "no rejection of non-characters" in card and "hccr predict" in card
    imagenet = render_model_card(dict(meta, start="imagenet"), metrics, parameters=1)
    assert "ImageNet-pretrained `tf_efficientnetv2_s`" in imagenet and "| head | 10 |" in imagenet
    assert "- augmentation: off;" in card and "predict-path views" not in card
    views = dict(meta["config"], augment={"enabled": True, "views": 0.5})
    with_views = render_model_card(dict(meta, config=views), metrics, parameters=1)
    assert "- augmentation: on; predict-path views for 50 % of the images each epoch;" in with_views


@pytest.fixture(scope="module")
def project(real_archive, tmp_path_factory):
    """A tiny pipeline state on real images: index, arrays, writer split, a trained run, metrics."""
    root = tmp_path_factory.mktemp("export_project")
    table, handle = read_archive(real_archive)
    writers = sorted(table["suite_id"].unique())[:20]
    table, index = archive_index(table, writers)
    (root / "data").mkdir()
    index.to_csv(root / "data" / "index.csv", index=False)
    native = np.stack([np.asarray(Image.open(io.BytesIO(handle.read(n)))) for n in table["name"]])
    np.save(root / "data" / "images_64.npy", native)
    np.save(root / "data" / "images_32.npy", np.stack([glyph_to_size(g, 32) for g in native]))
    role = np.where(
        index["writer"].isin(writers[:3]), "test", np.where(index["writer"].isin(writers[3:6]), "val", "train")
    )
    split = pd.DataFrame({"id": index["id"], "role": role})
    (root / "splits" / "holdout").mkdir(parents=True)
    split.to_csv(root / "splits" / "holdout" / "small.csv", index=False)

    train = split["role"].to_numpy() == "train"
    model, mean, std = train_small_cnn(native[train], index["label"].to_numpy()[train], TINY_CNN, epochs=6)
    sized = np.load(root / "data" / "images_32.npy")
    with torch.inference_mode():
        predicted = model(normalize(sized, mean, std)).argmax(1).numpy()
    correct = predicted == index["label"].to_numpy()
    val_acc, test_acc = float(correct[role == "val"].mean()), float(correct[role == "test"].mean())
    save_checkpoint(root / "models" / "cnn" / "small" / "checkpoint.pt", model, TINY_CNN, mean, std, val_acc)
    write_metrics(
        root / "metrics" / "cnn" / "small.json",
        "cnn",
        "small",
        {
            "accuracy": val_acc,
            "loss": 0.5,
            "accuracy_ci_low": val_acc - 0.02,
            "accuracy_ci_high": min(1.0, val_acc + 0.02),
            "n": int((role == "val").sum()),
        },
        {"accuracy": test_acc, "n": int((role == "test").sum())},
    )
    # A worse second run (never trained), which the selection must pass over.
    torch.manual_seed(1)
    untrained = create("cnn", TINY_CNN, "none", num_classes=15)[0].eval()
    save_checkpoint(root / "models" / "cnn" / "medium" / "checkpoint.pt", untrained, TINY_CNN, mean, std, 0.07)
    write_metrics(
        root / "metrics" / "cnn" / "medium.json", "cnn", "medium", {"accuracy": 0.07, "loss": 2.7}, {"accuracy": 0.06}
    )
    test_rows = index[role == "test"].iloc[::15]
    images = root / "test_images"
    images.mkdir()
    for row in test_rows.itertuples():
        (images / Path(row.path).name).write_bytes(handle.read(row.path))
    return {"root": root, "val_acc": val_acc, "test_acc": test_acc, "n_test": int((role == "test").sum())}


def export_args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--metrics",
        str(root / "metrics" / "cnn" / "small.json"),
        str(root / "metrics" / "cnn" / "medium.json"),
        "--models-dir",
        str(root / "models"),
        "--select",
        "val_accuracy",
        "--images",
        str(root / "data" / "images_64.npy"),
        str(root / "data" / "images_32.npy"),
        "--index",
        str(root / "data" / "index.csv"),
        "--split-dir",
        str(root / "splits"),
        "--tolerance",
        "1e-4",
        "--max-images",
        "512",
        "--out-dir",
        str(out),
        *extra,
    ]


@pytest.mark.realdata
@pytest.mark.slow
def test_export_parity_card_and_predict_from_onnx(project, tmp_path, capsys):
    root = project["root"]
    out = tmp_path / "export"
    assert export_main(export_args(root, out)) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "model.onnx", "model_card.md", "parity.json"]
    assert (out / "checkpoint.pt").read_bytes() == (root / "models" / "cnn" / "small" / "checkpoint.pt").read_bytes()

    parity = json.loads((out / "parity.json").read_text())
    with capsys.disabled():
        print(
            f"\nexport parity: {parity['exporter']} exporter, {parity['n_images']} {parity['role']} images, "
            f"max |p_onnx - p_torch| = {parity['max_abs_diff']:.2e}, mean {parity['mean_abs_diff']:.2e}, "
            f"top-1 agree {parity['top1_agree']}/{parity['n_images']}, accuracy torch {parity['torch_accuracy']:.4f} "
            f"onnx {parity['onnx_accuracy']:.4f}"
        )
    assert parity["passed"] and parity["role"] == "test" and parity["size"] == "small"
    assert parity["n_images"] == project["n_test"] == 450
    assert parity["max_abs_diff"] <= 1e-4 and parity["top1_agree"] == 450
    assert parity["torch_accuracy"] == pytest.approx(project["test_acc"])

    proto = onnx.load(str(out / "model.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["hccr.input_size"] == "32" and props["hccr.characters"] == CHARACTERS
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # dynamic batch axis

    card = (out / "model_card.md").read_text(encoding="utf-8")
    assert "trained from scratch" in card and f"{100 * project['test_acc']:.2f} %" in card
    assert "| test | 450 | 3 |" in card and "20 writers" in card

    # The ONNX file alone (metadata inside) predicts what the checkpoint predicts.
    images = str(root / "test_images")
    assert predict_main([images, "--model", str(out / "model.onnx"), "--format", "json"]) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    assert predict_main([images, "--model", str(out / "checkpoint.pt"), "--format", "json"]) == 0
    from_torch = json.loads(capsys.readouterr().out)
    assert len(from_onnx) == len(from_torch) == 30
    assert [r["character"] for r in from_onnx] == [r["character"] for r in from_torch]
    assert np.allclose([r["confidence"] for r in from_onnx], [r["confidence"] for r in from_torch], atol=1e-4)


@pytest.mark.realdata
@pytest.mark.slow
def test_failed_parity_leaves_nothing(project, tmp_path, monkeypatch, capsys):
    """An ONNX file that disagrees with the checkpoint fails the export and writes nothing."""
    import hccr.serving.export as export

    real_export = export.export_onnx

    def export_perturbed(model, *args, **kwargs):
        clone = copy.deepcopy(model)  # the real model stays as it is: parity compares against it
        with torch.no_grad():
            clone.head[-1].bias.add_(torch.linspace(-2, 2, len(CHARACTERS)))
        return real_export(clone, *args, **kwargs)

    monkeypatch.setattr(export, "export_onnx", export_perturbed)
    out = tmp_path / "export"
    assert export_main(export_args(project["root"], out)) == 2
    err = capsys.readouterr().err
    assert "parity failed" in err and "tolerance" in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder left behind
