"""Run the real snakemake / dvc command lines on a copy of the project's workflow files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "workflow" / "tiny.yaml"
PROJECT_FILES = ["Snakefile", "params.yaml", "dvc.yaml", ".dvcignore", "workflow"]


def make_project(dest: Path) -> Path:
    """Copy the workflow definition (not data, models or reports) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest / name)
    shutil.copy2(TINY, dest / "tiny.yaml")
    return dest


def tool_env() -> dict[str, str]:
    """The tools of this interpreter's environment first on PATH, few threads, no hub."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1")
    return env


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command line; on failure the assertion message carries its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout)
    return proc


def snakemake(project: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    exe = shutil.which("snakemake", path=tool_env()["PATH"]) or "snakemake"
    return run([exe, "--cores", "2", *args], cwd=project, timeout=timeout)


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"


def dvc(project: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    exe = shutil.which("dvc", path=tool_env()["PATH"]) or "dvc"
    return run([exe, *args], cwd=project, timeout=timeout)


def deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def make_dvc_project(dest: Path, message: str) -> Path:
    """A git + DVC copy of the project (sources included) whose params.yaml holds the tiny settings
    (one cnn run, no sweep: DVC reads params.yaml itself), committed with `message` and no dvc.lock."""
    import yaml

    project = make_project(dest)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
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
    run(["git", "commit", "-qm", message], cwd=project)
    return project
