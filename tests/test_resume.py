"""Resume for real: SIGKILL a training subprocess mid-run, rerun it, compare with a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from helpers_train import cnn_config, make_data, train_args

EPOCHS = 6
CFG = cnn_config(
    width=[16, 32],
    convs_per_block=2,
    # Augmentation (on in cnn_config) and dropout: the resumed epochs must replay their randomness.
    phases=[{"name": "train", "epochs": EPOCHS, "lr": 3e-3, "freeze": "none"}],
    scratch_phases=[
        {"name": "a", "epochs": 3, "lr": 3e-3, "freeze": "none"},
        {"name": "b", "epochs": EPOCHS - 3, "lr": 1e-3, "freeze": "none"},
    ],
)
# Columns that measure the machine, not the training.
TIMING = ["seconds", "images_per_second"]


def command(data, out, cfg=CFG):
    return [sys.executable, "-m", "hccr.training.train", *train_args(data, out, cfg, seed=5)]


def history_epochs(out) -> int:
    try:
        return len(pd.read_csv(out / "history.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("resume_every_s", [0, 3600])
def test_killed_run_resumes_to_the_same_result(tmp_path, resume_every_s):
    # 0: last.pt after every epoch. 3600: only at the end of each phase (epoch 3 of 6 here),
    # so a kill in phase b replays from epoch 3, to the same result.
    data = make_data(tmp_path / "data", n=600)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cfg = {**CFG, "resume_every_s": resume_every_s}
    kill_after = 2 if resume_every_s == 0 else 4

    clean = tmp_path / "clean"
    subprocess.run(command(data, clean), check=True, env=env, stderr=subprocess.DEVNULL, timeout=300)

    out = tmp_path / "killed"
    proc = subprocess.Popen(command(data, out, cfg), env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while history_epochs(out) < kill_after:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = history_epochs(out)
    assert kill_after <= done < EPOCHS, f"killed after {done} epochs: too late to test resuming"
    state = torch.load(out / "last.pt", weights_only=True)
    assert not state["finished"]
    if resume_every_s == 0:
        # history.csv is written just before last.pt: a kill between the two replays that epoch.
        assert done - 1 <= state["epoch"] <= done
    else:
        assert state["epoch"] == 3
    assert not (out / "train.json").exists()
    # A kill that lands inside a write leaves that write's temporary file (hccr.atomic): only
    # those, and the resumed run's own writes sweep them away.
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert all(name.endswith(".tmp") for name in leftovers), leftovers

    resumed = subprocess.run(command(data, out, cfg), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "a temporary file was left behind"

    expected = pd.read_csv(clean / "history.csv")
    got = pd.read_csv(out / "history.csv")
    assert got["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert got["phase"].tolist() == expected["phase"].tolist() == ["a"] * 3 + ["b"] * (EPOCHS - 3)
    numeric = [c for c in expected.columns if c not in TIMING + ["phase"]]
    np.testing.assert_allclose(got[numeric].to_numpy(float), expected[numeric].to_numpy(float), rtol=0, atol=1e-6)

    summary_clean = json.loads((clean / "train.json").read_text())
    summary = json.loads((out / "train.json").read_text())
    for key in (
        "best_epoch",
        "best_val_accuracy",
        "best_val_loss",
        "final_train_loss",
        "final_train_accuracy",
        "final_val_loss",
        "final_val_accuracy",
        "epochs",
        "start",
        "parameters",
    ):
        assert summary[key] == pytest.approx(summary_clean[key], abs=1e-6), key

    a = torch.load(clean / "checkpoint.pt", weights_only=True)
    b = torch.load(out / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"]
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-6)

    # The finished run, rerun, does nothing.
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = subprocess.run(command(data, out, cfg), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already finished" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
