"""Keep dvc.lock in step with what Snakemake made, so DVC never deletes finished work.

Why: `dvc exp run` first checks out every stage's outputs as dvc.lock records them
(`dvc checkout --force`, before it reproduces anything). An output that dvc.lock does not
record, or records in an older state, is deleted or rolled back: after `make run` (Snakemake
alone, no lock entries) the README's `dvc exp run` wiped `data/raw/chinese-mnist`, Snakemake
then refetched and, seeing newer data, deleted and retrained every run. `persist: true` only
stops `dvc repro` from deleting outputs before a stage runs; it does not protect them from checkout.

So every successful Snakemake run that did not come from DVC ends with `dvc commit --force`
for the DVC stages it brought up to date (the Snakefile's `onsuccess`): the `all` target
covers every stage, the targets `data`, `train`, `sweep` and `report` their own. A failed run
records nothing (its stages are not up to date) and says so (`warn_after_failure`). Under DVC
(`DVC_STAGE` is set in a stage's command) nothing is done: DVC records the lock itself.
Outside a DVC project, or without the `dvc` command, nothing is done either.

    python -m hccr.dvc_sync [TARGET ...]     # by hand, after e.g. `snakemake train` (default: all)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

from hccr.errors import reports_errors


def stage_outputs(stage: dict) -> list[str]:
    """The output paths of one dvc.yaml stage (entries are `path` or `{path: options}`)."""
    paths = []
    for entry in stage.get("outs", []) or []:
        paths.extend([entry] if isinstance(entry, str) else list(entry))
    return paths


def stages_to_record(targets: Iterable[str], stages: dict[str, dict], root: Path) -> list[str]:
    """The DVC stages a Snakemake run of `targets` brought up to date, whose outputs all exist."""
    targets = set(targets)
    chosen = list(stages) if "all" in targets else [name for name in stages if name in targets]
    return [name for name in chosen if all((root / path).exists() for path in stage_outputs(stages[name]))]


def record(targets: Iterable[str], root: str | os.PathLike = ".") -> list[str]:
    """`dvc commit --force` the stages `targets` cover; return them (empty when nothing to do)."""
    root = Path(root)
    if os.environ.get("DVC_STAGE"):
        return []  # DVC is running this Snakemake: it writes the lock entry itself
    if not (root / ".dvc").is_dir() or not (root / "dvc.yaml").is_file():
        return []
    stages = (yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")) or {}).get("stages", {})
    names = stages_to_record(targets, stages, root)
    if not names:
        return []
    dvc = shutil.which("dvc")
    if dvc is None:
        print(
            f"warning: `dvc` not found: dvc.lock not updated for {', '.join(names)}; run `dvc commit --force` "
            "before `dvc exp run`, which would otherwise delete outputs dvc.lock does not record",
            file=sys.stderr,
        )
        return []
    print(f"dvc_sync: recording {', '.join(names)} in dvc.lock (dvc commit --force)", file=sys.stderr)
    proc = subprocess.run([dvc, "commit", "--force", "--quiet", *names], cwd=root)
    if proc.returncode != 0:
        print(
            f"warning: `dvc commit --force {' '.join(names)}` failed (exit {proc.returncode}); run it by hand "
            "before `dvc exp run`",
            file=sys.stderr,
        )
        return []
    return names


def warn_after_failure(root: str | os.PathLike = ".") -> bool:
    """After a failed Snakemake run (outside DVC): say that dvc.lock was not updated, and why it matters."""
    root = Path(root)
    if os.environ.get("DVC_STAGE") or not (root / ".dvc").is_dir():
        return False
    print(
        "note: dvc.lock was not updated (the run failed). Finish with snakemake (it resumes) before "
        "`dvc exp run`: its checkout deletes outputs dvc.lock does not record. "
        "`python -m hccr.dvc_sync` records them by hand.",
        file=sys.stderr,
    )
    return True


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hccr.dvc_sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", default=["all"], help="Snakemake targets that ran (default: all)")
    args = parser.parse_args(argv)
    record(args.targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
