"""Issue 12, item 11: GPU slot locks belong to the machine, so two checkouts never share a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hccr.training import launch


def test_default_lock_dir_is_the_machines(monkeypatch, tmp_path):
    monkeypatch.delenv(launch.LOCK_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert launch.default_lock_dir() == Path("/tmp/hccr-gpu-locks")
    monkeypatch.setenv(launch.LOCK_DIR_ENV, str(tmp_path / "locks"))
    assert launch.default_lock_dir() == tmp_path / "locks"


def test_two_checkouts_on_one_machine_get_different_gpus(tmp_path):
    env = {**os.environ, "HCCR_NUM_GPUS": "2", launch.LOCK_DIR_ENV: str(tmp_path / "machine-locks")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    release = tmp_path / "release"
    hold = (
        "import os, pathlib, sys, time; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); "
        f"p = pathlib.Path({str(release)!r})\nwhile not p.exists(): time.sleep(0.05)"
    )
    jobs = []
    for name in ("checkout-a", "checkout-b"):
        checkout = tmp_path / name
        checkout.mkdir()
        # No --lock-dir: what the Snakemake rule runs, each from its own checkout.
        jobs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hccr.training.launch",
                    "--gpus",
                    "1",
                    "--poll",
                    "0.05",
                    "--",
                    sys.executable,
                    "-c",
                    hold,
                ],
                cwd=checkout,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        devices = [job.stdout.readline().strip() for job in jobs]
    finally:
        release.touch()
        for job in jobs:
            job.communicate(timeout=60)
    assert sorted(devices) == ["0", "1"], devices
    assert not (tmp_path / "checkout-a" / ".hccr").exists() and not (tmp_path / "checkout-b" / ".hccr").exists()
    assert sorted(p.name for p in (tmp_path / "machine-locks").iterdir()) == ["gpu0.slot0.lock", "gpu1.slot0.lock"]
    assert all(job.returncode == 0 for job in jobs)
