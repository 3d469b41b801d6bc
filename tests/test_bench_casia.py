"""bench/bench_casia.py still runs and prints every figure it promises (--smoke: tiny sizes).

Speeds are not asserted (figures belong to bench/); the figures must be there, positive, and
consistent with what the script says it measured.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"([0-9][0-9,]*(?:\.[0-9]+)?)"


def figure(pattern: str, text: str) -> float:
    match = re.search(pattern, text, flags=re.MULTILINE)
    assert match, f"no line matching {pattern!r} in:\n{text}"
    return float(match.group(1).replace(",", ""))


@pytest.mark.slow
def test_bench_casia_smoke_prints_decode_index_memory_and_loader_figures(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TMPDIR=str(tmp_path))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_casia.py"), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for label in ("decode .gnt", "header scan", "decode \\+ fit 64 px"):
        wall = figure(rf"^{label} \(1 core\):\s+{NUMBER} records/s wall", out)
        cpu = figure(rf"^{label} \(1 core\):.*, \s*{NUMBER} per CPU-second", out)
        assert wall > 0 and cpu > 0
    assert figure(rf"^simulated corpus: {NUMBER} records", out) == 2400
    for step in ("fetch", "index", "resize 64"):
        assert figure(rf"^{step}\s+{NUMBER} s", out) > 0
        assert figure(rf"^{step}\s+.*peak anonymous\s+{NUMBER} GB", out) > 0
    peak = figure(rf"^index peak memory beyond the output array: {NUMBER} GB", out)
    resize_peak = figure(rf"^resize 64\s+.*peak anonymous\s+{NUMBER} GB", out)
    assert peak >= resize_peak
    a = figure(rf"^loader \(a\) 13,500 x 64 x 64 copied in memory:\s+{NUMBER} images/s", out)
    b = figure(rf"^loader \(b\) 2,400 x 64 x 64 memory-mapped:\s+{NUMBER} images/s", out)
    assert figure(rf"^loader ratio \(b\)/\(a\): {NUMBER}", out) == pytest.approx(b / a, abs=0.01)
    # 2,400 images fit a quarter of any host's memory: the default copies them.
    c = figure(rf"^loader \(c\) 2,400 x 64 x 64, BatchLoader's default:\s+{NUMBER} images/s; copied into memory", out)
    assert figure(rf"^loader ratio \(c\)/\(a\): {NUMBER}", out) == pytest.approx(c / a, abs=0.01)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("bench_casia.")]  # cleaned up
