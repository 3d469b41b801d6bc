"""Issue 12, item 3: Snakemake, then the DVC front doors, never delete or redo finished work.

The tiny config through `snakemake` (as `make run` does), then `dvc exp run` and `dvc repro`
must rerun nothing and delete nothing; then one changed param reruns only what it touches.
"""

from __future__ import annotations

import pytest

from helpers_workflow import describe, dvc, make_dvc_project, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]
WORK = ("data", "models", "reports")


def state(project) -> dict[str, tuple[int, int]]:
    """Every file of the work folders with its modification time and size."""
    return {
        p.relative_to(project).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
        for folder in WORK
        for p in sorted((project / folder).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    # no dvc.lock: as after cloning
    project = make_dvc_project(tmp_path_factory.mktemp("dvc_after_snakemake"), "fresh clone")
    # What `make run` does: Snakemake alone, the whole DAG.
    proc = snakemake(project, "--profile", "workflow/profiles/local", timeout=900)
    assert proc.returncode == 0, describe(proc)
    assert "dvc commit" in proc.stderr, describe(proc)
    return project


def test_dvc_exp_run_then_repro_rerun_and_delete_nothing(project):
    before = state(project)
    assert any(name.startswith("models/runs/cnn/small/") for name in before)
    assert any(name.startswith("data/raw/chinese-mnist/") for name in before)
    proc = dvc(project, "exp", "run")
    assert proc.returncode == 0, describe(proc)
    assert "Missing output files" not in proc.stdout + proc.stderr
    assert state(project) == before, "dvc exp run changed finished work"
    proc = dvc(project, "repro")
    assert proc.returncode == 0, describe(proc)
    assert state(project) == before, "dvc repro changed finished work"
    assert "up to date" in dvc(project, "status").stdout.lower()


def test_one_changed_param_reruns_only_what_it_touches(project):
    before = state(project)
    proc = dvc(project, "exp", "run", "-S", "evaluate.calibration_bins=7")
    assert proc.returncode == 0, describe(proc)
    after = state(project)
    assert set(after) >= set(before), sorted(set(before) - set(after))
    changed = {name for name in before if after[name] != before[name]}
    assert "reports/metrics/cnn/small.json" in changed
    # Calibration bins change the metrics, so evaluation, the report and the export (which selects
    # by a metric) rerun; the data and the trained runs must not.
    untouched = [name for name in before if name.startswith(("data/", "models/runs/"))]
    assert untouched and not changed.intersection(untouched), sorted(changed.intersection(untouched))
