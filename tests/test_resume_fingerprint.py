"""Issue 12, item 10: a `last.pt` made from other data is never restored or resumed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from hccr.training.state import data_digest

from helpers_train import cnn_config, make_data, train_args

CFG = cnn_config(
    phases=[{"name": "train", "epochs": 1, "lr": 3e-3, "freeze": "none"}],
    scratch_phases=[{"name": "train", "epochs": 1, "lr": 3e-3, "freeze": "none"}],
)
OUTPUTS = ("checkpoint.pt", "history.csv", "train.json")


def train(data, out, extra=()):
    proc = subprocess.run(
        [sys.executable, "-m", "hccr.training.train", *train_args(data, out, CFG, extra=extra)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def test_digest_follows_pixels_rows_and_order():
    images = np.random.default_rng(0).integers(0, 255, (50, 8, 8), dtype=np.uint8)
    ids = np.arange(0, 50, 3)
    base = data_digest(images, ids, ids[:4])
    assert data_digest(images.copy(), ids, ids[:4]) == base
    changed = images.copy()
    changed[ids[5], 3, 3] ^= 1
    assert data_digest(changed, ids, ids[:4]) != base
    untouched = images.copy()
    untouched[1] ^= 1  # row 1 is not read by this run
    assert data_digest(untouched, ids, ids[:4]) == base
    assert data_digest(images, ids[::-1], ids[:4]) != base
    assert data_digest(images, ids, ids[:4], chunk=3) == base


@pytest.mark.slow
def test_other_images_or_filter_start_a_new_run_not_a_restored_one(tmp_path):
    data = make_data(tmp_path / "data", n=150)
    out = tmp_path / "run"
    train(data, out)
    old = torch.load(out / "checkpoint.pt", weights_only=True)

    # Same shape, other pixels; the workflow engine deletes the outputs but last.pt stays.
    images = np.load(data / "images.npy")
    np.save(data / "images.npy", 255 - images)
    for name in OUTPUTS:
        (out / name).unlink()
    log = train(data, out)
    assert "restoring" not in log and "starting afresh" in log
    new = torch.load(out / "checkpoint.pt", weights_only=True)
    assert new["normalize"] != old["normalize"]  # statistics of the new images, so a new training
    assert "nothing to do" in train(data, out)  # and the new run is then the one resumed

    (out / "checkpoint.pt").unlink()
    log = train(data, out, extra=("--resize-filter", "lanczos"))
    assert "restoring" not in log and "starting afresh" in log
    assert torch.load(out / "checkpoint.pt", weights_only=True)["resize_filter"] == "lanczos"
