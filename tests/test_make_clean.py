"""Issue 12, item 4: `make clean` removes only re-creatable files; data and models go by name."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USERS = ["data/raw/archive.zip", "data/raw/notes/mine.txt"]
FETCHED = ["data/raw/chinese-mnist/SOURCE.json", "data/raw/chinese-mnist/data/data/input_1_1_1.jpg"]
MODELS = ["models/runs/cnn/small/last.pt", "models/runs/cnn/small/checkpoint.pt", "models/export/model.onnx"]
GENERATED = [
    "logs/fetch.log",
    "data/interim/index.csv",
    "data/processed/images_64.npy",
    "reports/figures/a.png",
    "reports/evaluation/cnn/small/details.json",
    "reports/plots/history/a.csv",
    "reports/report.md",
    "reports/report.html",
]
KEPT_ALWAYS = ["reports/metrics/cnn/small.json", ".snakemake/incomplete/x"]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture
def tree(tmp_path) -> Path:
    shutil.copy2(ROOT / "Makefile", tmp_path / "Makefile")
    for name in USERS + FETCHED + MODELS + GENERATED + KEPT_ALWAYS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    return tmp_path


def make(tree: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", target], cwd=tree, capture_output=True, text=True, timeout=60
    )


def present(tree: Path, names: list[str]) -> list[str]:
    return [name for name in names if (tree / name).exists()]


def test_clean_keeps_the_users_files_the_dataset_and_the_models(tree):
    assert make(tree, "clean").returncode == 0
    assert present(tree, GENERATED) == []
    kept = USERS + FETCHED + MODELS + KEPT_ALWAYS
    assert present(tree, kept) == kept


def test_clean_models_is_the_named_way_to_drop_trained_runs(tree):
    assert make(tree, "clean-models").returncode == 0
    assert present(tree, MODELS) == [] and present(tree, USERS + FETCHED) == USERS + FETCHED


def test_clean_data_removes_only_what_fetch_made(tree):
    assert make(tree, "clean-data").returncode == 0
    assert present(tree, FETCHED) == [] and present(tree, USERS) == USERS
    # A folder in that place without fetch's SOURCE.json is the user's: refused, kept.
    (tree / "data/raw/chinese-mnist/chinese_mnist.csv").parent.mkdir(parents=True)
    (tree / "data/raw/chinese-mnist/chinese_mnist.csv").write_text("mine")
    proc = make(tree, "clean-data")
    assert proc.returncode != 0 and "not made by fetch" in proc.stderr
    assert (tree / "data/raw/chinese-mnist/chinese_mnist.csv").read_text() == "mine"
