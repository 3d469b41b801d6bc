"""Time and memory of rendering the printed-glyph corpus; prints figures, asserts nothing.

    python bench/bench_glyphs.py [--fonts ukai uming microhei zenhei] [--variants 2] [--workers 2]
        [--out /tmp/glyphs_bench]

Runs the corpus step as the glyph_corpus rule does (`python -m hccr.data.glyphs`, all 3,755
characters of GB2312 level 1) in a child process and prints its wall time, images/s, the
peak resident memory of the step and its worker processes (ru_maxrss of the children: the
largest single process, not a sum), and the array's size. Target (issue 15): the whole corpus
within 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fonts", nargs="+", default=["ukai", "uming", "microhei", "zenhei"])
    parser.add_argument("--variants", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=None, help="folder for the corpus (default: a temporary one, removed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "hccr.data.glyphs", "--fonts", *args.fonts, "--variants", str(args.variants),
                "--workers", str(args.workers), "--images", str(out / "images_64.npy"),
                "--index", str(out / "index.csv"), "--summary", str(out / "corpus.json")]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(argv, check=True, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
        summary = json.loads((out / "corpus.json").read_text(encoding="utf-8"))
        array_mib = (out / "images_64.npy").stat().st_size / 2**20
    images = summary["images"]
    print(f"corpus      {summary['classes']:,} characters x {len(args.fonts)} fonts x {args.variants} variants")
    print(f"images      {images:,}  ({array_mib:.0f} MiB uint8 array)")
    print(f"wall        {wall:.1f} s (process start and imports included; render alone {summary['seconds']:.1f} s)")
    print(f"rate        {images / wall:,.0f} images/s on {args.workers} worker(s)")
    print(f"peak RSS    {peak_mib:,.0f} MiB (largest single process: the step, holding the whole array)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
