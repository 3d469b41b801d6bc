"""The real dvc command line on a tiny synthetic copy of the project: repro, metrics, exp run."""

import json
import shutil

import pytest
import yaml

from helpers_workflow import ROOT, TINY, describe, make_project, run, tool_env

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def dvc(project, *args, timeout=900):
    exe = shutil.which("dvc", path=tool_env()["PATH"]) or "dvc"
    return run([exe, *args], cwd=project, timeout=timeout)


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("dvc_project"))
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # DVC reads params.yaml itself: write the tiny settings into it (one model keeps it quick).
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), yaml.safe_load(TINY.read_text()))
    params["models"] = ["cnn"]
    params["model"]["cnn"]["sizes"] = ["small"]
    params["sweep"]["enabled"] = False
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@example.com"],
        ["git", "config", "user.name", "t"],
    ):
        assert run(cmd, cwd=project).returncode == 0
    proc = dvc(project, "init", "-q")
    assert proc.returncode == 0, describe(proc)
    assert dvc(project, "config", "core.analytics", "false").returncode == 0
    run(["git", "add", "-A"], cwd=project)
    run(["git", "commit", "-qm", "tiny project"], cwd=project)
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
        ("src/hccr/classes.py", {"data", "train", "sweep", "report", "export"}),  # shared by every step
        ("src/hccr/training/loader.py", {"train", "sweep"}),
        ("src/hccr/reporting/report_data.py", {"report", "export"}),
        ("src/hccr/serving/onnx_meta.py", {"export"}),
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
