"""Issue 12: fault injection. Kill fetch, train and export at seeded random moments (SIGKILL and
SIGTERM); after each kill every artifact is either absent or complete, nothing of the user's is
touched, and a rerun finishes with every artifact complete and no temporaries left behind.

Each kill waits for the step to be at work (fetch and export: their temporary folder exists;
train: one more epoch is on disk), then a seeded random extra delay, so it lands mid-write
rather than during the imports. Bounded: tiny synthetic data, four kills per step.
`pytest -s` prints the table of faults.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from hccr.data.fetch import verify_dataset
from hccr.models import checkpoint

from helpers_data import make_raw, zip_folder
from helpers_train import cnn_config, make_data, train_args

pytestmark = pytest.mark.slow
SEED = 12
SIGNALS = (signal.SIGKILL, signal.SIGTERM)
EPOCHS = 8
CFG = cnn_config(
    scheme="holdout",
    phases=[{"name": "train", "epochs": EPOCHS, "lr": 3e-3, "freeze": "none"}],
    scratch_phases=[{"name": "train", "epochs": EPOCHS, "lr": 3e-3, "freeze": "none"}],
    resume_every_s=0,
)
TABLE: list[str] = []


def plan(step: str, high: float) -> list[tuple[signal.Signals, float]]:
    """Two kills per signal, each a seeded random 0..`high` seconds after the step is at work."""
    rng = random.Random(f"{SEED}-{step}")
    return [(sig, round(rng.uniform(0.0, high), 2)) for sig in SIGNALS for _ in range(2)]


def kill_when(cmd: list[str], sig: signal.Signals, at_work, delay: float) -> str:
    """Start `cmd`; once `at_work()` holds, wait `delay` s and send `sig`.

    Returns 'killed', or 'finished' when the command ended first.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and not at_work():
        assert time.monotonic() < deadline, "the step never got to work"
        time.sleep(0.02)
    try:
        proc.wait(timeout=delay)
        return "finished"
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
        proc.wait(timeout=120)
        return "killed"


def rerun(cmd: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temporaries(folder: Path) -> list[str]:
    return sorted(
        p.name for p in folder.rglob("*") if p.name.startswith(".") and (".tmp" in p.name or p.name.endswith(".old"))
    )


def record(step, sig, delay, outcome, after_kill, after_rerun):
    TABLE.append(f"| {step} | {sig.name} | {delay:.2f} s | {outcome} | {after_kill} | {after_rerun} |")


@pytest.fixture(scope="module", autouse=True)
def print_table():
    yield
    print(
        "\n| step | signal | delay once at work | process | after the kill | after a rerun |"
        "\n| --- | --- | --- | --- | --- | --- |"
    )
    print("\n".join(TABLE))


# ---------------------------------------------------------------- fetch


def test_fetch_killed_anywhere(tmp_path):
    data_raw = tmp_path / "data" / "raw"
    data_raw.mkdir(parents=True)
    archive = zip_folder(make_raw(tmp_path / "src", writers=20, samples=4), data_raw / "archive.zip")
    notes = data_raw / "notes.txt"
    notes.write_text("the user's")
    user = {archive: sha(archive), notes: sha(notes)}
    out = data_raw / "chinese-mnist"
    cmd = [sys.executable, "-m", "hccr.data.fetch", "--source", str(archive), "--out", str(out), "--workers", "1"]

    def at_work() -> bool:
        return any(p.name.startswith(".chinese-mnist.") for p in data_raw.iterdir())

    for number, (sig, delay) in enumerate(plan("fetch", 0.6)):
        if number % 2 == 0:  # a first fetch; otherwise one replacing the previous output
            shutil.rmtree(out, ignore_errors=True)
        outcome = kill_when(cmd, sig, at_work, delay)
        complete = (out / "SOURCE.json").is_file()
        if complete:  # the swap is atomic: a present output is a whole, verified one
            assert verify_dataset(out, workers=1, progress=False)["images"] == 20 * 4 * 15
        else:
            assert not out.exists()
        left = temporaries(data_raw)
        if sig == signal.SIGTERM:
            assert left == [], f"SIGTERM left {left}"
        assert {path: sha(path) for path in user} == user
        rerun(cmd)
        assert verify_dataset(out, workers=1, progress=False)["images"] == 20 * 4 * 15
        assert temporaries(data_raw) == [] and {path: sha(path) for path in user} == user
        start = "first fetch" if number % 2 == 0 else "replacing"
        record(
            "fetch",
            sig,
            delay,
            f"{outcome} ({start})",
            "complete" if complete else f"absent, {len(left)} temporaries",
            "complete, no temporaries, user files intact",
        )


# ---------------------------------------------------------------- train


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("faults") / "data", n=300)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reference") / "cnn" / "small"
    rerun([sys.executable, "-m", "hccr.training.train", *train_args(data, out, CFG)])
    return torch.load(out / "checkpoint.pt", weights_only=True)


def epochs(out: Path) -> int:
    try:
        return len(pd.read_csv(out / "history.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def check_run(out: Path) -> str:
    """Each of the run's files absent or complete; a short description."""
    present = []
    for name in ("checkpoint.pt", "last.pt"):
        if (out / name).exists():
            torch.load(out / name, weights_only=True)  # a whole file, not a torn one
            present.append(name)
    if (out / "history.csv").exists():
        assert len(pd.read_csv(out / "history.csv")) >= 1
        present.append("history.csv")
    if (out / "train.json").exists():
        json.loads((out / "train.json").read_text())
        present.append("train.json")
    return ", ".join(present) or "nothing yet"


def test_train_killed_anywhere_resumes_to_the_same_weights(data, reference, tmp_path):
    models = tmp_path / "models"
    out = models / "runs" / "cnn" / "small"
    mine = models / "my_notes.md"
    mine.parent.mkdir(parents=True)
    mine.write_text("the user's")
    cmd = [sys.executable, "-m", "hccr.training.train", *train_args(data, out, CFG)]
    for sig, delay in plan("train", 0.25):
        done = epochs(out)
        outcome = kill_when(cmd, sig, lambda done=done: epochs(out) > done, delay)
        after_kill = check_run(out) + f" ({epochs(out)} epochs in history)"
        if sig == signal.SIGTERM:
            assert temporaries(out) == []
        record("train", sig, delay, outcome, after_kill, "")
    rerun(cmd)
    assert check_run(out) == "checkpoint.pt, last.pt, history.csv, train.json"
    assert len(pd.read_csv(out / "history.csv")) == EPOCHS
    final = torch.load(out / "checkpoint.pt", weights_only=True)
    for key, tensor in reference["state_dict"].items():
        assert torch.equal(final["state_dict"][key], tensor), key
    assert temporaries(out) == [] and mine.read_text() == "the user's"
    TABLE[-1] = TABLE[-1][: -len(" |")] + "all four runs' rerun: complete, weights bit-identical to an unkilled run |"


# ---------------------------------------------------------------- export


def test_export_killed_anywhere(data, reference, tmp_path):
    models = tmp_path / "models"
    run_dir = models / "cnn" / "small"
    run_dir.mkdir(parents=True)
    torch.save(reference, run_dir / "checkpoint.pt")
    metrics = tmp_path / "metrics" / "cnn" / "small.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(
        json.dumps(
            {
                "model": "cnn",
                "size": "small",
                "protocol": "writer",
                "start": "scratch",
                "parameters": 1,
                "val": {"accuracy": 0.5, "loss": 1.0},
            }
        )
    )
    out = models / "export"
    mine = models / "README.txt"
    mine.write_text("the user's")
    cmd = [
        sys.executable,
        "-m",
        "hccr.serving.export",
        "--metrics",
        str(metrics),
        "--models-dir",
        str(models),
        "--images",
        str(data / "images.npy"),
        "--index",
        str(data / "index.csv"),
        "--split",
        str(data / "split.csv"),
        "--max-images",
        "64",
        "--threads",
        "1",
        "--out-dir",
        str(out),
    ]
    expected = ["checkpoint.pt", "model.onnx", "model_card.md", "parity.json"]

    def at_work() -> bool:
        return any(p.name.startswith(".export.") for p in models.iterdir())

    for number, (sig, delay) in enumerate(plan("export", 1.5)):
        if number % 2 == 0:  # a first export; otherwise one replacing the previous output
            shutil.rmtree(out, ignore_errors=True)
        outcome = kill_when(cmd, sig, at_work, delay)
        if out.exists():
            assert sorted(p.name for p in out.iterdir()) == expected
            checkpoint.load(out / "checkpoint.pt")
        if sig == signal.SIGTERM:
            assert temporaries(models) == []
        after_kill = "complete" if out.exists() else f"absent, {len(temporaries(models))} temporaries"
        rerun(cmd)
        assert sorted(p.name for p in out.iterdir()) == expected
        assert json.loads((out / "parity.json").read_text())["passed"] is True
        assert temporaries(models) == [] and mine.read_text() == "the user's"
        start = "first export" if number % 2 == 0 else "replacing"
        record("export", sig, delay, f"{outcome} ({start})", after_kill, "complete, no temporaries, user files intact")
