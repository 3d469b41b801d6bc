"""Tiny learnable training data shared by the training tests (no real images needed)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from hccr.data.layout import CHINESE_MNIST

SIZE = 32


def make_data(folder, n=300, seed=0, learnable=True, size=SIZE, classes=CHINESE_MNIST):
    """Noise plus a bar whose length gives the class; roles by writer.

    Writers 0-6 of every ten train, 7-8 validate, 9 test, so every class is in every role.
    With `learnable=False` the labels are shuffled: a model can only memorise them.
    `classes`: the label set the index defines (Chinese MNIST's 15 by default).
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(classes)
    writers = np.arange(n) // len(classes)
    images = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = rng.integers(4, size - 6)
        images[i, row : row + 3, 1 : 3 + 2 * int(label)] = 220
    if not learnable:
        labels = rng.permutation(labels)
    roles = np.where(writers % 10 < 7, "train", np.where(writers % 10 < 9, "val", "test"))
    return write_data(folder, images, labels, writers, roles, classes)


def write_data(folder, images, labels, writers, roles, classes=CHINESE_MNIST):
    """`images.npy`, `index.csv` and `split.csv` in `folder`, as the data steps write them."""
    labels, n = np.asarray(labels), len(images)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", images)
    pd.DataFrame(
        {
            "id": np.arange(n),
            "writer": writers,
            "sample": 1,
            "code": labels + 1,
            "value": [classes.values[label] for label in labels],
            "character": [classes.characters[label] for label in labels],
            "label": labels,
            "path": [f"p{i}.jpg" for i in range(n)],
        }
    ).to_csv(folder / "index.csv", index=False)
    pd.DataFrame({"id": np.arange(n), "role": roles}).to_csv(folder / "split.csv", index=False)
    return folder


def cnn_config(**overrides):
    """A tiny cnn training config for `make_data` images; keys in `overrides` replace its own."""
    cfg = {
        "arch": "cnn",
        "scheme": "holdout",
        "input_size": SIZE,
        "in_chans": 1,
        "pretrained": "none",
        "width": [8, 16],
        "convs_per_block": 1,
        "dropout": 0.1,
        "batch_size": 32,
        "gpus": 1,
        "optimizer": {"name": "adamw", "weight_decay": 1e-4},
        "schedule": "cosine",
        "label_smoothing": 0.05,
        "early_stopping": {"enabled": False, "patience": 3},
        "augment": {"enabled": True, "degrees": 8.0, "translate": 0.08, "scale": 0.1, "shear": 5.0},
        "phases": [{"name": "train", "epochs": 2, "lr": 3e-3, "freeze": "none"}],
        "scratch_phases": [{"name": "train", "epochs": 2, "lr": 3e-3, "freeze": "none"}],
    }
    cfg.update(overrides)
    return cfg


def train_args(data, out, cfg, seed=1, extra=(), model="cnn", size="small", threads=1):
    """`hccr.training.train` arguments for a run on `make_data` output."""
    return [
        "--model",
        model,
        "--size",
        size,
        "--images",
        str(data / "images.npy"),
        "--index",
        str(data / "index.csv"),
        "--split",
        str(data / "split.csv"),
        "--config-json",
        json.dumps(cfg),
        "--seed",
        str(seed),
        "--threads",
        str(threads),
        "--out",
        str(out),
        *extra,
    ]


def evaluate_args(run, data, outputs, model="cnn", size="small", extra=()):
    """`hccr.evaluation.evaluate` arguments scoring the run folder `run` on `make_data` output;
    `outputs`: the metrics, details and predictions files to write."""
    metrics, details, predictions = outputs
    return [
        "--checkpoint", str(run / "checkpoint.pt"), "--train-summary", str(run / "train.json"),
        "--images", str(data / "images.npy"), "--index", str(data / "index.csv"), "--split", str(data / "split.csv"),
        "--protocol", "writer", "--model", model, "--size", size, *extra,
        "--out-metrics", str(metrics), "--out-details", str(details), "--out-predictions", str(predictions),
    ]  # fmt: skip
