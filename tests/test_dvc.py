"""The real dvc command line on a tiny synthetic copy of the project: repro, metrics, exp run."""

import json

import pytest

from helpers_workflow import describe, dvc, make_dvc_project, run

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory):
    project = make_dvc_project(tmp_path_factory.mktemp("dvc_project"), "tiny project")
    proc = dvc(project, "repro")
    assert proc.returncode == 0, describe(proc)
    return project


def test_repro_builds_the_metrics_of_every_run(dvc_project):
    proc = dvc(dvc_project, "metrics", "show", "--json")
    assert proc.returncode == 0, describe(proc)
    shown = json.dumps(json.loads(proc.stdout))
    assert "reports/metrics/cnn/small.json" in shown
    assert '"accuracy"' in shown
    assert (dvc_project / "reports/report.html").exists()


def test_repro_again_is_a_no_op(dvc_project):
    proc = dvc(dvc_project, "status")
    assert proc.returncode == 0, describe(proc)
    assert "up to date" in proc.stdout.lower()


def changed_stages(project) -> set[str]:
    proc = dvc(project, "status", "--json")
    assert proc.returncode == 0, describe(proc)
    return set(json.loads(proc.stdout))


@pytest.mark.parametrize(
    "module, stages",
    [
        ("src/hccr/classes.py", {"data", "train", "sweep", "writer_cv", "report", "export", "robustness"}),
        ("src/hccr/training/loader.py", {"train", "sweep", "writer_cv"}),
        ("src/hccr/reporting/report_data.py", {"writer_cv", "report", "export"}),
        ("src/hccr/serving/onnx_meta.py", {"export", "robustness"}),  # robustness reads the ONNX export
    ],
)
def test_touching_a_module_a_stage_runs_marks_that_stage_changed(dvc_project, module, stages):
    path = dvc_project / module
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# touched\n")
        assert changed_stages(dvc_project) == stages
    finally:
        path.write_bytes(original)
    assert changed_stages(dvc_project) == set()


def test_exp_run_with_a_changed_param_shows_in_metrics_diff(dvc_project):
    run(["git", "add", "-A"], cwd=dvc_project)
    run(["git", "commit", "-qm", "baseline results"], cwd=dvc_project)
    proc = dvc(dvc_project, "exp", "run", "-S", "seed=5")
    assert proc.returncode == 0, describe(proc)
    proc = dvc(dvc_project, "metrics", "diff", "--json")
    assert proc.returncode == 0, describe(proc)
    diff = json.loads(proc.stdout)
    changed = diff["reports/metrics/cnn/small.json"]
    assert any(entry.get("diff") not in (None, 0) for entry in changed.values()), diff
