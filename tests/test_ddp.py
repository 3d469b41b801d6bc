"""A real two-process DDP run (gloo on the CPU) through `hccr.training.launch --gpus 2` and torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from hccr.models import checkpoint
from hccr.training.history import COLUMNS

from helpers_train import SIZE, cnn_config, make_data, train_args

CFG = cnn_config(
    batch_size=16, gpus=2, optimizer={"name": "adam", "weight_decay": 0.0}, schedule="inverse_time", label_smoothing=0.0
)


@pytest.mark.slow
def test_two_process_gloo_run_completes_and_its_checkpoint_loads(tmp_path):
    data = make_data(tmp_path / "data", n=255)
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "hccr.training.launch",
        "--gpus",
        "2",
        "--lock-dir",
        str(tmp_path / "locks"),
        "--",
        sys.executable,
        "-m",
        "hccr.training.train",
        *train_args(data, out, CFG, seed=3, threads=2),
    ]
    env = {**os.environ, "HCCR_NUM_GPUS": "0"}  # no GPU: two gloo processes on the CPU
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "last.pt", "history.csv", "train.json"}
    history = pd.read_csv(out / "history.csv")
    assert tuple(history.columns) == COLUMNS and history["epoch"].tolist() == [1, 2]
    summary = json.loads((out / "train.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 32
    assert summary["n_train"] == 210

    # Each rank trained on its own half: 105 images at batch 16 is 7 optimizer steps per epoch
    # (one process would take 14), visible in the inverse-time lr log.
    steps = 7
    lr = 3e-3
    expected = [lr / (1 + (lr / 2) * (steps * e - 1)) for e in (1, 2)]
    assert history["lr"].tolist() == pytest.approx(expected, rel=1e-12)

    model, meta = checkpoint.load_model(out / "checkpoint.pt")
    assert meta["epoch"] == summary["best_epoch"] and meta["model"] == "cnn"
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["state_dict"]
    assert saved.keys() == model.state_dict().keys()  # no DDP "module." prefixes
    with torch.no_grad():
        assert model(torch.zeros(3, 1, SIZE, SIZE)).shape == (3, 15)
    assert summary["backend"] == "gloo" and summary["ranks_per_device"] == 1


def test_a_multi_gpu_config_in_one_process_is_refused(tmp_path):
    # A 2-GPU sweep cell run by one process would train at half the global batch: refused
    # before training starts or any output is written.
    data = make_data(tmp_path / "data", n=255)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hccr.training.train", *train_args(data, out, CFG, seed=3)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "model.cnn.gpus is 2 but this run has 1 process(es)" in result.stderr
    assert not out.exists() or not any(out.iterdir())
