"""hccr.atomic: artifacts appear whole or not at all, with ordinary permissions."""

import os
import stat

import pytest

from hccr import atomic


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out" / "a.json"
    atomic.write_json(target, {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text().strip().startswith("{")
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]  # no temp left


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = tmp_path / "d"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "one").write_text("1")
    with pytest.raises(ValueError):
        with atomic.atomic_dir(target) as tmp:
            (tmp / "two").write_text("2")
            raise ValueError
    assert [p.name for p in target.iterdir()] == ["one"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "f.txt", "x")
        with atomic.atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


SWAP_KILLED = """
import os, signal, sys
from pathlib import Path
from hccr import atomic
from hccr.errors import reports_errors

target = Path(sys.argv[1])
real_replace = os.replace

def replace_then_terminated(src, dst):
    # A SIGTERM (Snakemake's, SLURM's) arriving between the swap's two renames.
    real_replace(src, dst)
    os.replace = real_replace
    os.kill(os.getpid(), signal.SIGTERM)

def swap(argv=None):
    with atomic.atomic_dir(target) as tmp:
        (tmp / "new").write_text("new")
        os.replace = replace_then_terminated
    print("the swap is done")
    return 0

# Without a handler SIGTERM ends the process; hccr's CLIs turn it into SystemExit(143).
sys.exit(reports_errors(swap)() if sys.argv[2] == "handled" else swap())
"""


@pytest.mark.parametrize("handling", ["default", "handled"])
def test_a_sigterm_inside_the_folder_swap_waits_for_it(tmp_path, handling):
    """Killed mid-swap, the new folder is in place whole and no `.NAME.old` is left behind."""
    import signal
    import subprocess
    import sys

    target = tmp_path / "d"
    target.mkdir()
    (target / "old").write_text("old")
    proc = subprocess.run(
        [sys.executable, "-c", SWAP_KILLED, str(target), handling], capture_output=True, text=True, timeout=60
    )
    assert "the swap is done" not in proc.stdout, "the signal must still arrive"
    assert proc.returncode in (-signal.SIGTERM, 143), proc.stderr
    assert [p.name for p in target.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
