"""The pipeline on a real single-node SLURM cluster (.ci/slurm/cluster.sh) through workflow/profiles/slurm.

The cluster runs as root from Debian's packages (slurm-wlm 22.05, munge, slurmdbd + MariaDB for
`sacct`); where it cannot (not root, packages missing) every test here is skipped with the reason.
The node declares eight fake GPUs, so GPU requests are scheduled as on a GPU node, and its TaskProlog
tells each task how many it got (HCCR_NUM_GPUS, what torch.cuda.device_count() says on a real node).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers_workflow import ROOT, describe, make_project, tool_env


def on_cluster_marks(test):
    """The marks of a test that needs the cluster (all but the first here)."""
    for mark in (pytest.mark.slurm, pytest.mark.workflow, pytest.mark.slow):
        test = mark(test)
    return test


CLUSTER_SCRIPT = ROOT / ".ci" / "slurm" / "cluster.sh"
NARROW = ROOT / "tests" / "workflow" / "slurm.yaml"  # one model; a 1-GPU and a 4-GPU sweep cell
CONFIG = ["--configfile", "tiny.yaml", "slurm.yaml"]
SLURM_ARGS = ["--profile", "workflow/profiles/slurm", "--jobs", "8", "--slurm-keep-successful-logs", "--verbose"]
# The plugin's first status check comes 40 s after a submission by default; the tiny jobs take seconds.
SLURM_ARGS += ["--slurm-init-seconds-before-status-checks", "1"]
NODE_GPUS = [str(i) for i in range(8)]  # what cluster.sh declares
# Timings differ between any two runs; everything else in the compared outputs must match.
VOLATILE = re.compile(r"seconds|per_second")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop it")
def test_check_names_why_a_machine_cannot_run_the_cluster():
    # The reason the cluster tests skip with: a user without root is told so, whatever is installed.
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(CLUSTER_SCRIPT), "check"]
    proc = subprocess.run(as_nobody, check=False, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "not root" in proc.stdout, describe(proc)


class Cluster:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.env = {**tool_env(), "SLURM_CONF": str(state / "etc" / "slurm.conf")}

    def run(self, *cmd: str, timeout: float = 60) -> str:
        proc = subprocess.run(cmd, check=False, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, describe(proc)
        return proc.stdout

    def sacct(self, *args: str) -> list[dict[str, str]]:
        fields = ["JobIDRaw", "State", "ReqTRES", "AllocTRES", "ExitCode"]
        out = self.run(
            "sacct", "-X", "--parsable2", "--noheader", "--starttime", "now-1day", "--format", ",".join(fields), *args
        )
        return [dict(zip(fields, line.split("|"), strict=False)) for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    check = subprocess.run([str(CLUSTER_SCRIPT), "check"], check=False, capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip(f"no SLURM cluster on this machine: {(check.stdout + check.stderr).strip()}")
    state = tmp_path_factory.mktemp("slurm")
    started = time.monotonic()
    try:  # stop whatever started, even when the start failed or timed out
        start = subprocess.run(
            [str(CLUSTER_SCRIPT), "start", str(state)],
            check=False,
            env=tool_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert start.returncode == 0, describe(start) + _daemon_logs(state)
        print(f"slurm cluster up in {time.monotonic() - started:.1f}s")
        yield Cluster(state)
    finally:
        subprocess.run([str(CLUSTER_SCRIPT), "stop", str(state)], check=False, capture_output=True, timeout=120)


def _daemon_logs(state: Path) -> str:
    return "".join(
        f"\n--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}"
        for log in sorted((state / "log").glob("*.log"))
    )


def _project(tmp_path_factory, name: str) -> Path:
    project = make_project(tmp_path_factory.mktemp(name))
    shutil.copy2(NARROW, project / "slurm.yaml")
    return project


def _snakemake_cmd(*args: str) -> list[str]:
    exe = shutil.which("snakemake", path=tool_env()["PATH"]) or "snakemake"
    return [exe, *args]


class Run:
    """One snakemake process in the background, its stdout and stderr in one log file."""

    def __init__(self, project: Path, args: list[str], env: dict[str, str], log_name: str) -> None:
        self.log = project / log_name
        self._file = self.log.open("w")
        self.proc = subprocess.Popen(
            _snakemake_cmd(*args), cwd=project, env=env, stdout=self._file, stderr=subprocess.STDOUT, text=True
        )

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # leave no snakemake behind; the assertion shows its log
            self.proc.wait()
            return -9
        finally:
            self._file.close()

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


def jobs_of(output: str) -> dict[str, dict]:
    """Snakemake's job blocks: jobid -> rule, wildcards and whether it ran as a local rule."""
    jobs = {}
    for block in re.finditer(r"^(localrule|rule) (\w+):\n((?:    .*\n)+)", output, re.MULTILINE):
        body = block[3]
        jobid = re.search(r"^    jobid: (\d+)$", body, re.MULTILINE)[1]
        wildcards = re.search(r"^    wildcards: (.*)$", body, re.MULTILINE)
        jobs[jobid] = {
            "local": block[1] == "localrule",
            "rule": block[2],
            "wildcards": dict(w.split("=", 1) for w in wildcards[1].split(", ")) if wildcards else {},
        }
    return jobs


def submissions_of(output: str) -> dict[str, str]:
    """Snakemake jobid -> SLURM job id, from the plugin's log."""
    return dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", output))


def sbatch_calls_of(output: str) -> dict[str, str]:
    """The plugin's sbatch command lines (--verbose), keyed by their --comment (rule and wildcards)."""
    calls = {}
    for call in re.findall(r"sbatch call: (sbatch .*)", output):
        comment = re.search(r"--comment '?([^' ]+)'?", call)[1]
        calls[comment] = call
    return calls


def gres_gpu(tres: str) -> int:
    match = re.search(r"gres/gpu=(\d+)", tres)
    return int(match[1]) if match else 0


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The whole tiny DAG twice: on the cluster and locally (at the same time: the SLURM run mostly waits)."""
    slurm_project = _project(tmp_path_factory, "slurm_project")
    local_project = _project(tmp_path_factory, "local_project")
    started = time.monotonic()
    local = Run(local_project, ["--cores", "1", *CONFIG], tool_env(), "local_run.log")
    on_slurm = Run(slurm_project, [*SLURM_ARGS, *CONFIG], cluster.env, "slurm_run.log")
    slurm_code = on_slurm.wait(timeout=900)
    print(f"snakemake on slurm: {time.monotonic() - started:.1f}s")
    local_code = local.wait(timeout=900)
    assert slurm_code == 0, f"exit {slurm_code}\n{on_slurm.output[-8000:]}" + _daemon_logs(cluster.state)
    assert local_code == 0, f"exit {local_code}\n{local.output[-8000:]}"
    return slurm_project, local_project, on_slurm.output


@on_cluster_marks
def test_every_job_goes_through_sbatch_and_sacct_shows_it_completed(cluster, runs):
    _, _, output = runs
    jobs = jobs_of(output)
    submitted = submissions_of(output)
    remote = {jobid for jobid, job in jobs.items() if not job["local"]}
    assert {job["rule"] for job in jobs.values() if job["local"]} == {"all"}  # the target rule runs nothing
    assert len(remote) >= 20 and set(submitted) == remote
    run_id = re.search(r"SLURM run ID: (\S+)", output)[1]
    accounted = {row["JobIDRaw"]: row for row in cluster.sacct("--name", run_id)}
    assert set(accounted) == set(submitted.values())
    not_completed = {
        jobs[j]["rule"]: accounted[s]["State"] for j, s in submitted.items() if accounted[s]["State"] != "COMPLETED"
    }
    assert not not_completed


@on_cluster_marks
def test_each_training_job_asks_slurm_for_its_runs_gpus(cluster, runs):
    _, _, output = runs
    jobs, submitted, calls = jobs_of(output), submissions_of(output), sbatch_calls_of(output)
    accounted = {row["JobIDRaw"]: row for row in cluster.sacct("--jobs", ",".join(submitted.values()))}
    asked = {}
    for jobid, slurm_id in submitted.items():
        job = jobs[jobid]
        comment = f"rule_{job['rule']}" + (
            f"_wildcards_{'_'.join(job['wildcards'].values())}" if job["wildcards"] else ""
        )
        flag = re.search(r"--gpus=(\d+)", calls[comment])
        asked[comment] = (int(flag[1]) if flag else 0, gres_gpu(accounted[slurm_id]["AllocTRES"]))
    expected = {
        "rule_train_run_wildcards_cnn_small": 1,
        "rule_train_run_wildcards_cnn_full": 1,
        "rule_sweep_run_wildcards_cnn_small_1_0.003_16": 1,
        "rule_sweep_run_wildcards_cnn_small_4_0.003_16": 4,
    }
    for comment, gpus in expected.items():
        assert asked.pop(comment) == (gpus, gpus), comment  # the sbatch flag, and what SLURM allocated
    assert all(pair == (0, 0) for pair in asked.values()), asked  # no other job holds a GPU
    four = calls["rule_sweep_run_wildcards_cnn_small_4_0.003_16"]
    assert " -p gpu" in four and "--cpus-per-gpu=8" in four


@on_cluster_marks
def test_the_allocation_reaches_the_launcher_as_on_a_gpu_node(runs):
    slurm_project, _, _ = runs

    def devices_launched(log: str) -> list[str]:
        text = (slurm_project / log).read_text()
        (visible,) = re.findall(r"^launch: CUDA_VISIBLE_DEVICES=(.*)$", text, re.MULTILINE)
        return visible.split(",")

    # Four of the node's eight devices, as SLURM chose them, one rank each.
    four = devices_launched("logs/train/sweep/cnn/small/g4-lr0.003-b16.log")
    assert len(set(four)) == 4 and set(four) <= set(NODE_GPUS)
    summary = json.loads((slurm_project / "models/sweep/cnn/small/g4-lr0.003-b16/train.json").read_text())
    assert summary["world_size"] == 4
    for log in ["logs/train/cnn/small.log", "logs/train/cnn/full.log", "logs/train/sweep/cnn/small/g1-lr0.003-b16.log"]:
        one = devices_launched(log)
        assert len(one) == 1 and one[0] in NODE_GPUS, log


def _comparable(path: Path):
    if path.suffix == ".json":
        return _drop_volatile(json.loads(path.read_text()))
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
        return frame.drop(columns=[c for c in frame.columns if VOLATILE.search(c)]).to_dict("list")
    return path.read_bytes()


def _drop_volatile(value):
    if isinstance(value, dict):
        return {k: _drop_volatile(v) for k, v in value.items() if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [_drop_volatile(v) for v in value]
    return value


@on_cluster_marks
def test_outputs_match_a_local_run(runs):
    slurm_project, local_project, _ = runs
    patterns = [
        "data/interim/*",
        "data/processed/**/*",
        "models/runs/*/*/history.csv",
        "models/runs/*/*/train.json",
        "models/sweep/**/*.csv",
        "models/sweep/**/train.json",
        "reports/metrics/**/*.json",
        "reports/evaluation/**/*",
    ]
    files = sorted(
        {p.relative_to(local_project) for pattern in patterns for p in local_project.glob(pattern) if p.is_file()}
    )
    assert len(files) >= 20
    differ = [str(f) for f in files if _comparable(slurm_project / f) != _comparable(local_project / f)]
    assert not differ


@on_cluster_marks
def test_a_cancelled_job_fails_the_run_and_reruns_cleanly(cluster, runs):
    slurm_project, local_project, _ = runs
    target = "models/runs/cnn/small/train.json"
    args = [target, *SLURM_ARGS, *CONFIG, "--forcerun", target]
    run = Run(slurm_project, args, cluster.env, "cancel_run.log")
    deadline = time.monotonic() + 120
    while not submissions_of(run.output) and time.monotonic() < deadline and run.proc.poll() is None:
        time.sleep(0.2)
    submitted = submissions_of(run.output)
    assert submitted, run.output[-4000:]
    (slurm_id,) = submitted.values()
    cluster.run("scancel", slurm_id)
    code = run.wait(timeout=180)
    assert code not in (0, -9), f"exit {code}\n{run.output[-6000:]}"
    assert f"SLURM-job '{slurm_id}' failed" in run.output and "CANCELLED" in run.output
    (row,) = cluster.sacct("--jobs", slurm_id)
    assert row["State"].startswith("CANCELLED")
    assert not (slurm_project / target).exists()  # snakemake removed what the killed job may have half-written

    rerun = Run(slurm_project, [target, *SLURM_ARGS, *CONFIG], cluster.env, "rerun.log")
    assert rerun.wait(timeout=300) == 0, rerun.output[-6000:]
    rerun_ids = list(submissions_of(rerun.output).values())
    assert len(rerun_ids) == 1 and rerun_ids[0] != slurm_id
    assert cluster.sacct("--jobs", rerun_ids[0])[0]["State"] == "COMPLETED"
    for name in ("history.csv", "train.json"):
        path = Path(target).parent / name
        assert _comparable(slurm_project / path) == _comparable(local_project / path), name
