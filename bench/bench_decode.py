"""Speed of the data half of the pipeline on the real archive; prints figures, asserts nothing.

    python bench/bench_decode.py [--archive ../shared/data/chinese-mnist.zip] [--workers 2]
        [--steps] [--synthetic-writers 20]

Prints images/s for decoding every JPEG at native 64 px and for resizing to 299 px (the
resize step's own code paths), the synthetic generator's images/s, and with --steps the wall
time of each data step run as its CLI (fetch, index, resize 64, resize 299, subset).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _timed(label: str, argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    print(f"{label:<12} {seconds:6.2f} s wall")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--archive",
        default=os.environ.get("HCCR_REAL_DATA", str(ROOT.parent / "shared" / "data" / "chinese-mnist.zip")),
    )
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--steps", action="store_true", help="also time each step's CLI end to end")
    parser.add_argument("--synthetic-writers", type=int, default=20)
    args = parser.parse_args()
    if not Path(args.archive).exists():
        print(f"error: real archive {args.archive} not found (set HCCR_REAL_DATA or pass --archive)", file=sys.stderr)
        return 2

    from hccr.data.fetch import fetch
    from hccr.data.index import build_index
    from hccr.data.resize import decode_native, resize_to_file
    from hccr.data.synthetic import generate

    with tempfile.TemporaryDirectory(prefix="hccr-bench-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        fetch(args.archive, tmp / "raw", workers=args.workers, progress=False)
        print(f"fetch (unpack + verify) {time.perf_counter() - start:6.2f} s")
        table = build_index(tmp / "raw")
        paths = [tmp / "raw" / p for p in table["path"]]

        start = time.perf_counter()
        native = decode_native(paths, workers=args.workers, progress=False)
        seconds = time.perf_counter() - start
        print(f"decode 64:  {len(native) / seconds:8.0f} images/s ({len(native)} images, {seconds:.2f} s)")

        start = time.perf_counter()
        resize_to_file(native, 299, "bilinear", tmp / "images_299.npy", workers=args.workers, progress=False)
        seconds = time.perf_counter() - start
        print(f"resize 299: {len(native) / seconds:8.0f} images/s ({seconds:.2f} s, bilinear, written to .npy)")
        (tmp / "images_299.npy").unlink()

        start = time.perf_counter()
        counts = generate(
            tmp / "synthetic", writers=args.synthetic_writers, samples_per_writer=10, seed=0, progress=False
        )
        seconds = time.perf_counter() - start
        print(f"synthetic:  {counts['images'] / seconds:8.0f} images/s ({counts['images']} images, {seconds:.2f} s)")

        if args.steps:
            subsets = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["subsets"]
            total = 0.0
            total += _timed("fetch", ["hccr.data.fetch", "--source", args.archive, "--out", str(tmp / "steps" / "raw")])
            total += _timed(
                "index",
                ["hccr.data.index", "--raw", str(tmp / "steps" / "raw"), "--out", str(tmp / "steps" / "index.csv")],
            )
            for size in (64, 299):
                total += _timed(
                    f"resize {size}",
                    [
                        "hccr.data.resize",
                        "--raw",
                        str(tmp / "steps" / "raw"),
                        "--index",
                        str(tmp / "steps" / "index.csv"),
                        "--size",
                        str(size),
                        "--filter",
                        "bilinear",
                        "--out",
                        str(tmp / "steps" / f"images_{size}.npy"),
                    ],
                )
            total += _timed(
                "subset",
                [
                    "hccr.data.subset",
                    "--index",
                    str(tmp / "steps" / "index.csv"),
                    "--config-json",
                    json.dumps(subsets),
                    "--seed",
                    "42",
                    "--out-dir",
                    str(tmp / "steps" / "splits"),
                ],
            )
            print(f"{'total':<12} {total:6.2f} s wall (sequential)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
