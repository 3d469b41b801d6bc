"""hccr.dvc_sync: which DVC stages a Snakemake run records in dvc.lock, and when it stays out."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from hccr import dvc_sync

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def make_outputs(root: Path, *stages: str) -> None:
    for name in stages:
        for path in dvc_sync.stage_outputs(STAGES[name]):
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.suffix:  # reports/report.md and .html are files, the rest folders
                target.write_text("x")
            else:
                target.mkdir(exist_ok=True)


def test_every_dvc_stage_is_a_snakemake_target_of_the_same_name():
    for name, stage in STAGES.items():
        assert stage["cmd"].split()[-1] == name


def test_all_covers_every_stage_whose_outputs_exist(tmp_path):
    make_outputs(tmp_path, "data", "train", "report")  # no sweep outputs: nothing to record there
    assert dvc_sync.stages_to_record(["all"], STAGES, tmp_path) == ["data", "train", "report"]
    assert dvc_sync.stages_to_record(["train"], STAGES, tmp_path) == ["train"]
    assert dvc_sync.stages_to_record(["fetch", "index"], STAGES, tmp_path) == []


@pytest.fixture
def fake_dvc(tmp_path, monkeypatch):
    """A project with a .dvc folder and a `dvc` on PATH that logs its arguments."""
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    make_outputs(tmp_path, *STAGES)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "dvc"
    exe.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.log"}\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("DVC_STAGE", raising=False)
    return tmp_path


def test_records_with_dvc_commit_force(fake_dvc):
    assert dvc_sync.record(["all"], fake_dvc) == list(STAGES)
    assert (fake_dvc / "calls.log").read_text().split() == ["commit", "--force", "--quiet", *STAGES]


def test_stays_out_under_dvc_and_outside_a_dvc_project(fake_dvc, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "train")
    assert dvc_sync.record(["all"], fake_dvc) == []
    monkeypatch.delenv("DVC_STAGE")
    (fake_dvc / ".dvc").rmdir()
    assert dvc_sync.record(["all"], fake_dvc) == []
    assert not (fake_dvc / "calls.log").exists()


def test_a_failed_run_says_the_lock_was_not_updated(fake_dvc, monkeypatch, capsys):
    assert dvc_sync.warn_after_failure(fake_dvc) is True
    assert "dvc.lock was not updated" in capsys.readouterr().err
    monkeypatch.setenv("DVC_STAGE", "train")
    assert dvc_sync.warn_after_failure(fake_dvc) is False
    assert not (fake_dvc / "calls.log").exists()
