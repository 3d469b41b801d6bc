"""Shared test setup: small thread counts (2 cores, several test processes) and real-data lookup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# Nothing may reach a model hub during tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _real_archive() -> Path | None:
    candidates = [os.environ.get("HCCR_REAL_DATA"), ROOT.parent / "shared" / "data" / "chinese-mnist.zip"]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Path(candidate).resolve()
    return None


@pytest.fixture(scope="session")
def real_archive() -> Path:
    """The real Chinese MNIST archive (HCCR_REAL_DATA or ../shared/data/chinese-mnist.zip)."""
    path = _real_archive()
    if path is None:
        pytest.skip("real data absent: set HCCR_REAL_DATA or place ../shared/data/chinese-mnist.zip")
    return path


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.set_num_threads(1)
