"""hccr.training.launch: GPU slot locks under real concurrency (simulated GPUs), torchrun, signals."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hccr.training.launch import torchrun_command

# The job: record CUDA_VISIBLE_DEVICES, start and end times; sleep in between.
JOB = (
    "import json, os, sys, time\n"
    "start = time.time(); time.sleep(float(sys.argv[2])); end = time.time()\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    json.dump({'cvd': os.environ.get('CUDA_VISIBLE_DEVICES'), 'start': start, 'end': end}, f)\n"
)


def launcher(tmp_path, gpus, *cmd, slots=1, num_gpus="4", env=None):
    environment = {**os.environ, "HCCR_NUM_GPUS": num_gpus, **(env or {})}
    args = [
        sys.executable,
        "-m",
        "hccr.training.launch",
        "--gpus",
        str(gpus),
        "--slots-per-gpu",
        str(slots),
        "--lock-dir",
        str(tmp_path / "locks"),
        "--poll",
        "0.05",
        "--",
        *cmd,
    ]
    return subprocess.Popen(args, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_jobs(tmp_path, count, sleep, **kw):
    procs = [
        launcher(tmp_path, 1, sys.executable, "-c", JOB, str(tmp_path / f"job{i}.json"), str(sleep), **kw)
        for i in range(count)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    return [json.loads((tmp_path / f"job{i}.json").read_text()) for i in range(count)]


def overlap(a, b) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_concurrent_jobs_never_share_a_device(tmp_path):
    jobs = run_jobs(tmp_path, 6, 0.8)
    assert len(jobs) == 6
    assert {job["cvd"] for job in jobs} <= {"0", "1", "2", "3"}
    for a, b in itertools.combinations(jobs, 2):
        if a["cvd"] == b["cvd"]:
            assert not overlap(a, b), (a, b)
    # Six jobs on four devices: some device served two jobs, one after the other.
    assert len({job["cvd"] for job in jobs}) < 6


def test_slots_per_gpu_lets_jobs_share_a_device(tmp_path):
    jobs = run_jobs(tmp_path, 2, 2.0, slots=2, num_gpus="1")
    assert [job["cvd"] for job in jobs] == ["0", "0"]
    assert overlap(*jobs)


def test_one_slot_per_gpu_serialises_jobs_on_one_device(tmp_path):
    jobs = run_jobs(tmp_path, 2, 0.5, slots=1, num_gpus="1")
    assert [job["cvd"] for job in jobs] == ["0", "0"]
    assert not overlap(*jobs)


def test_multi_gpu_job_runs_under_torchrun_on_distinct_devices(tmp_path):
    (tmp_path / "probe_mod.py").write_text(
        "import json, os, sys\n"
        "rank = os.environ['RANK']\n"
        "with open(os.path.join(sys.argv[1], f'rank{rank}.json'), 'w') as f:\n"
        "    json.dump({k: os.environ.get(k) for k in ('CUDA_VISIBLE_DEVICES', 'WORLD_SIZE', 'RANK')}, f)\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = launcher(tmp_path, 2, sys.executable, "-m", "probe_mod", str(tmp_path), env=env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert {r["RANK"] for r in ranks} == {"0", "1"} and {r["WORLD_SIZE"] for r in ranks} == {"2"}
    visible = ranks[0]["CUDA_VISIBLE_DEVICES"].split(",")
    assert len(visible) == 2 and len(set(visible)) == 2 and set(visible) <= {"0", "1", "2", "3"}


def test_torchrun_rewrite():
    assert torchrun_command(["python", "-m", "hccr.training.train", "--seed", "1"], 4) == [
        "python",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "4",
        "-m",
        "hccr.training.train",
        "--seed",
        "1",
    ]
    assert torchrun_command(["hccr", "train", "--out", "x"], 2)[-4:] == ["-m", "hccr.training.train", "--out", "x"]
    with pytest.raises(Exception, match="python -m"):
        torchrun_command(["bash", "-c", "true"], 2)


def test_exit_status_is_propagated(tmp_path):
    proc = launcher(tmp_path, 1, sys.executable, "-c", "import sys; sys.exit(3)")
    proc.communicate(timeout=60)
    assert proc.returncode == 3


def test_without_gpus_the_command_runs_untouched(tmp_path):
    out = tmp_path / "job.json"
    proc = launcher(
        tmp_path, 1, sys.executable, "-c", JOB, str(out), "0", num_gpus="0", env={"CUDA_VISIBLE_DEVICES": "left-alone"}
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out.read_text())["cvd"] == "left-alone"


def test_zero_gpus_hides_every_device(tmp_path):
    out = tmp_path / "job.json"
    proc = launcher(tmp_path, 0, sys.executable, "-c", JOB, str(out), "0")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out.read_text())["cvd"] == ""


def test_more_gpus_than_the_machine_has_is_an_error(tmp_path):
    proc = launcher(tmp_path, 5, sys.executable, "-c", "pass")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "error:" in err and "--gpus 5" in err and "4 GPU" in err and "slots_per_gpu >= 2" in err


# A torchrun rank: record its environment and when it ran.
RANK_PROBE = (
    "import json, os, sys, time\n"
    "start = time.time(); time.sleep(float(sys.argv[2])); end = time.time()\n"
    "keys = ('CUDA_VISIBLE_DEVICES', 'WORLD_SIZE', 'RANK', 'LOCAL_WORLD_SIZE')\n"
    "with open(os.path.join(sys.argv[1], f\"rank{os.environ['RANK']}.json\"), 'w') as f:\n"
    "    json.dump({**{k: os.environ.get(k) for k in keys}, 'start': start, 'end': end}, f)\n"
)


def test_more_ranks_than_gpus_share_the_devices_and_hold_one_slot_each(tmp_path):
    # A sweep's 4-GPU cell on a 1-GPU machine with 4 slots: four ranks on device 0, and the
    # device is full while they run (a 1-GPU job waits for them).
    (tmp_path / "rank_probe.py").write_text(RANK_PROBE)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    cell = launcher(tmp_path, 4, sys.executable, "-m", "rank_probe", str(tmp_path), "3", slots=4, num_gpus="1", env=env)
    locks = tmp_path / "locks"
    deadline = time.monotonic() + 60
    while len(list(locks.glob("*.lock"))) < 4:  # all four slots taken
        assert time.monotonic() < deadline and cell.poll() is None, cell.communicate()
        time.sleep(0.05)
    single = launcher(tmp_path, 1, sys.executable, "-c", JOB, str(tmp_path / "single.json"), "0", slots=4, num_gpus="1")
    _, err = cell.communicate(timeout=120)
    assert cell.returncode == 0, err
    assert "4 ranks on 1 GPU(s), up to 4 per device" in err
    _, err = single.communicate(timeout=120)
    assert single.returncode == 0, err
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(4)]
    assert [r["CUDA_VISIBLE_DEVICES"] for r in ranks] == ["0"] * 4
    assert {r["WORLD_SIZE"] for r in ranks} == {"4"} and {r["LOCAL_WORLD_SIZE"] for r in ranks} == {"4"}
    job = json.loads((tmp_path / "single.json").read_text())
    assert job["start"] >= max(r["end"] for r in ranks)


def test_ranks_per_device_spreads_round_robin():
    from hccr.training.launch import ranks_per_device

    assert ranks_per_device(2, 4) == [1, 1]
    assert ranks_per_device(4, 1) == [4]
    assert ranks_per_device(3, 2) == [2, 1]  # ranks 0, 2 on device 0; rank 1 on device 1
    assert ranks_per_device(8, 3) == [3, 3, 2]


# SIGINT back to its default first: a test run started in the background (`make test &`) has
# SIGINT ignored, as POSIX shells start background jobs, and the job would inherit that.
WAITER = (
    "import os, signal, sys, time\nsignal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "open(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
)


def wait_for(path: Path, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): read its state.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def free_slot_soon(tmp_path, timeout=20.0) -> bool:
    """Whether a new one-GPU job on the single simulated device gets to run within `timeout`."""
    proc = launcher(tmp_path, 1, sys.executable, "-c", "pass", num_gpus="1")
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return False
    return proc.returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_reach_the_job_and_the_slot_is_freed(tmp_path, sig):
    marker = tmp_path / "pid"
    proc = launcher(tmp_path, 1, sys.executable, "-c", WAITER, str(marker), num_gpus="1")
    child = int(wait_for(marker))
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig
    assert not alive(child)
    assert free_slot_soon(tmp_path)


def test_killed_launcher_takes_its_job_and_lock_with_it(tmp_path):
    marker = tmp_path / "pid"
    proc = launcher(tmp_path, 1, sys.executable, "-c", WAITER, str(marker), num_gpus="1")
    child = int(wait_for(marker))
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate(timeout=30)
    assert free_slot_soon(tmp_path)
    deadline = time.monotonic() + 10
    while alive(child):
        assert time.monotonic() < deadline, "the job outlived its killed launcher"
        time.sleep(0.05)


def test_jobs_get_a_passive_openmp_wait_policy(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["HCCR_NUM_GPUS"] = "0"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hccr.training.launch",
            "--gpus",
            "1",
            "--lock-dir",
            str(tmp_path),
            "--",
            sys.executable,
            "-c",
            "import os; print(os.environ['OMP_WAIT_POLICY'])",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "PASSIVE"
