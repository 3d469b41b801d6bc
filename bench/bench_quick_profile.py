"""Wall time of the whole pipeline under the quick profile, per rule and end to end.

    python bench/bench_quick_profile.py [--archive ../shared/data/chinese-mnist.zip]
        [--dest DIR | --in-place] [--cores N] [--target all] [--json OUT] [--timeout S] [--smoke]
        [-- EXTRA SNAKEMAKE ARGS]

Runs `snakemake --profile workflow/profiles/quick --config data_source=<archive>` in a fresh
copy of the workflow files (Snakefile, params.yaml, dvc.yaml, workflow/) under `--dest` (a
new folder under /tmp by default, kept so its logs can be read) or, with `--in-place`, in
the repository itself. Then prints the wall seconds of every job from Snakemake's benchmark
files (`logs/benchmarks/**/*.tsv`, column `s`), the sum per step (fetch, index, resize,
subset, train, evaluate, ...), the sum over all jobs, and the end-to-end wall time (jobs
run in parallel when cores allow, so the sum can exceed it). `--smoke` runs only the `data`
target on the tiny synthetic test config (tests/workflow/tiny.yaml): seconds, for the tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

PROJECT_FILES = ("Snakefile", "params.yaml", "dvc.yaml", ".dvcignore", "workflow")
TINY_CONFIG = _common.ROOT / "tests" / "workflow" / "tiny.yaml"


def copy_project(dest: Path) -> Path:
    """The workflow definition (no data, models or reports) copied into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = _common.ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to snakemake's process group (it stops its jobs), SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def read_benchmarks(project: Path) -> list[dict]:
    """One row per benchmark file: job (path under logs/benchmarks, no .tsv), step, seconds, max_rss."""
    import pandas as pd

    base = project / "logs" / "benchmarks"
    rows = []
    for path in sorted(base.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        if "s" not in table.columns or table.empty:
            continue
        job = path.relative_to(base).with_suffix("").as_posix()
        step = job.split("/")[0]
        if job.startswith("train/sweep/"):
            step = "sweep"
        rss = table["max_rss"].iloc[-1] if "max_rss" in table.columns else None
        rows.append(
            {
                "job": job,
                "step": step,
                "seconds": float(table["s"].iloc[-1]),
                "max_rss_mb": None if rss is None or pd.isna(rss) or rss == "-" else float(rss),
            }
        )
    return rows


def print_summary(rows: list[dict], wall: float, returncode: int) -> dict:
    width = max([len(r["job"]) for r in rows] + [10])
    print(f"{'job':<{width}} {'seconds':>9} {'max RSS MB':>11}")
    for row in rows:
        rss = f"{row['max_rss_mb']:.0f}" if row["max_rss_mb"] is not None else "-"
        print(f"{row['job']:<{width}} {row['seconds']:>9.1f} {rss:>11}")
    steps: dict[str, float] = {}
    for row in rows:
        steps[row["step"]] = steps.get(row["step"], 0.0) + row["seconds"]
    print()
    print(f"{'step':<12} {'jobs':>5} {'seconds':>9}")
    for step, seconds in steps.items():
        print(f"{step:<12} {sum(r['step'] == step for r in rows):>5} {seconds:>9.1f}")
    total = sum(steps.values())
    print(f"{'sum of jobs':<12} {len(rows):>5} {total:>9.1f}")
    print(f"end-to-end wall: {wall:.1f} s ({wall / 60:.1f} min), snakemake exit {returncode}")
    return {
        "jobs": rows,
        "steps": steps,
        "sum_of_jobs_s": total,
        "wall_s": wall,
        "returncode": returncode,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--archive",
        default=_common.default_archive(),
        help="data_source (default: %(default)s)",
    )
    parser.add_argument(
        "--dest",
        default=None,
        help="folder for the fresh copy (default: a new /tmp folder, kept)",
    )
    parser.add_argument("--in-place", action="store_true", help="run in the repository itself")
    parser.add_argument("--profile", default="workflow/profiles/quick")
    parser.add_argument(
        "--cores",
        default=None,
        help="passed to snakemake --cores (default: the profile's)",
    )
    parser.add_argument("--target", default=None, help="snakemake target (default: the default target)")
    parser.add_argument("--json", default=None, help="also write the summary to this JSON file")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop snakemake after this many seconds and report the jobs that finished",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="data target on the tiny synthetic config (tests)",
    )
    parser.add_argument("extra", nargs="*", help="more snakemake arguments (after --)")
    args = parser.parse_args(argv)

    if args.in_place:
        project = _common.ROOT
    else:
        project = copy_project(Path(args.dest) if args.dest else Path(tempfile.mkdtemp(prefix="hccr-quick-")))
    cmd = [shutil.which("snakemake") or "snakemake", "--profile", args.profile]
    if args.smoke:
        shutil.copy2(TINY_CONFIG, project / "tiny.yaml")
        cmd += ["--configfile", "tiny.yaml"]
        args.target = args.target or "data"
        source = "synthetic"
    else:
        source = str(Path(args.archive).resolve()) if Path(args.archive).exists() else args.archive
    cmd += ["--config", f"data_source={source}"]
    if args.cores:
        cmd += ["--cores", str(args.cores)]
    if args.target:
        cmd.append(args.target)
    cmd += args.extra

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    _common.header(
        "quick profile: wall time per rule and end to end",
        {"project": str(project), "command": " ".join(cmd)},
    )
    log = project / "logs" / "bench_quick_profile.snakemake.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        # Its own session, so a timeout can stop snakemake and every job it started.
        proc = subprocess.Popen(
            cmd,
            cwd=project,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"# timed out after {args.timeout:g} s: stopping snakemake; jobs below are the finished ones")
            stop_group(proc)
    wall = time.perf_counter() - start
    print(f"# snakemake output: {log}")
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        print("# snakemake failed; last lines of its output:\n#   " + "\n#   ".join(tail))
    summary = print_summary(read_benchmarks(project), wall, proc.returncode)
    print(f"# load average at end (1/5/15 min): {_common.load_average()}")
    if args.json:
        from hccr.atomic import write_json

        write_json(args.json, {"command": cmd, "project": str(project), **summary})
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
