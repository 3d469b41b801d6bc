"""CASIA-HWDB at scale: .gnt decoding speed, indexing a million records in bounded memory, and
the loader reading a million-image memory map. Prints figures, asserts nothing.

    python bench/bench_casia.py [--records 1000000] [--per-file 4000] [--workers 2]
        [--batches 60] [--batch-size 128] [--keep DIR] [--smoke]

1. decode: every record of one fixture writer file (hccr.data.casia_fixture: 4,000 glyphs,
   40-110 px a side) read from the page cache by `GntFile.records()` into (h, w) uint8 arrays,
   in this process (one core); also the header-only scan the index uses, and decode + fit into
   64 x 64 (the resize step's per-record work). Rates per wall second and per CPU second of
   this process (on a shared machine the second is the fairer "one core" figure).
2. index: a simulated corpus of `--records` records: `--records / --per-file` writer files
   `1001-c.gnt`, ... that are symbolic links to a few fixture files (so it costs the disk one
   file's bytes; every read comes from the page cache). The three CLI steps run on it as
   Snakemake runs them (`python -m hccr.data.casia_steps fetch | index | resize --size 64`),
   while a sampler adds up the memory (PSS) of the step's whole process tree every 100 ms:
   anonymous memory (heap, arrays: what the step itself holds) and file-backed pages (the
   output memory map and the source files, which the kernel may drop at any time). The target
   is the anonymous peak, under 1 GB, beyond the output array.
3. loader: `BatchLoader` (augmentation on, as training) over (a) a 13,500-image array copied
   into memory, today's Chinese MNIST path, and (b) the million-image memory map from step 2,
   gathered batch by batch (`in_memory=False`; the next batch is read on a helper thread while
   the current one is warped), at one torch thread; median of 7 windows
   taken in turns (a, b, a, b, ...) so that the shared machine's changing load hits both.
   (c) is BatchLoader's default on the same array: copied into memory when it needs at most a
   quarter of the host's available memory (the copy's seconds are printed), else as (b).
   The memory map is in the page cache right after step 2 (fsync'ed first, so no page is still
   being written back); a cold read from disk is slower. Random rows of a map touched for the
   first time cost a page fault each: that, not the copy, is the gap to (a).

Everything lives in a temporary folder that is deleted at the end (unless `--keep`).
`--smoke` shrinks every size for the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = 2  # distinct fixture files the simulated corpus links to


# ---------------------------------------------------------------------------- memory sampling


def _tree(root: int) -> list[int]:
    """pid and every descendant of it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _rss(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed + shared) proportional set size of one process; zeros if it is gone.

    PSS splits a page shared by n processes n ways, so the sum over the tree counts the pages
    forked workers share with their parent once (RSS would count them in every worker)."""
    anon = other = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("Pss_Anon:"):
                    anon = int(line.split()[1]) * 1024
                elif line.startswith(("Pss_File:", "Pss_Shmem:")):
                    other += int(line.split()[1]) * 1024
    except OSError:
        pass
    return anon, other


def run_measured(argv: list[str]) -> tuple[float, int, int]:
    """Run a command; return (seconds, peak anonymous bytes, peak file-backed bytes) of its process tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks = [0, 0]

    def sample() -> None:
        while proc.poll() is None:
            totals = [0, 0]
            for pid in _tree(proc.pid):
                anon, other = _rss(pid)
                totals[0] += anon
                totals[1] += other
            peaks[0], peaks[1] = max(peaks[0], totals[0]), max(peaks[1], totals[1])
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    sampler.join()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({proc.returncode}):\n{err[-3000:]}")
    return seconds, peaks[0], peaks[1]


# ---------------------------------------------------------------------------- the three parts


def make_templates(folder: Path, per_file: int) -> list[Path]:
    from hccr.data.casia import gb2312_level1
    from hccr.data.casia_fixture import write_writer_file

    characters = gb2312_level1()[: min(per_file, 1000)]
    samples = -(-per_file // len(characters))
    paths = []
    for t in range(TEMPLATES):
        path = write_writer_file(folder / f"template-{t}.bin", 9000 + t, characters, samples, seed=t)
        if samples * len(characters) != per_file:  # trim to exactly per_file records
            from hccr.data.casia import GntFile

            keep = list(GntFile(path.name.replace(".bin", "") + "-c.gnt", path).records(pixels=False))[per_file]
            with open(path, "r+b") as handle:
                handle.truncate(keep.offset)
        paths.append(path)
    return paths


def bench_decode(template: Path, repeats: int) -> None:
    from PIL import Image

    from hccr.data.casia import GntFile
    from hccr.data.casia_images import fit_square

    file = GntFile("9000-c.gnt", template)
    records = sum(1 for _ in file.records())  # warm the page cache
    mb = template.stat().st_size / 1e6

    def timed(work) -> tuple[float, float]:
        """Median wall seconds and median CPU seconds of this process over `repeats` passes."""
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            work()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        return statistics.median(wall), statistics.median(cpu)

    def decode() -> None:
        for record in file.records():
            record.image()

    def scan() -> None:
        for _ in file.records(pixels=False):
            pass

    def fit() -> None:
        for record in file.records():
            fit_square(record.image(), 64, 4, Image.Resampling.BILINEAR)

    for label, work in (("decode .gnt", decode), ("header scan", scan), ("decode + fit 64 px", fit)):
        wall, cpu = timed(work)
        print(
            f"{label + ' (1 core):':<30} {records / wall:10,.0f} records/s wall, {records / cpu:10,.0f} per CPU-second "
            f"({mb / wall:,.0f} MB/s wall; {records} records, {mb:.1f} MB, median of {repeats})"
        )


def simulate_corpus(folder: Path, templates: list[Path], records: int, per_file: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    files = max(1, records // per_file)
    for i in range(files):
        (folder / f"{1001 + i}-c.gnt").symlink_to(templates[i % len(templates)])
    return files * per_file


def bench_index(work: Path, source: Path, records: int, workers: int) -> Path:
    step = [sys.executable, "-m", "hccr.data.casia_steps"]
    raw, index, images = work / "raw", work / "index.csv", work / "images_64.npy"
    runs = [
        ("fetch", [*step, "fetch", "--source", f"casia-hwdb:{source}", "--out", str(raw)]),
        ("index", [*step, "index", "--raw", str(raw), "--out", str(index)]),
        (
            "resize 64",
            [
                *step,
                "resize",
                "--raw",
                str(raw),
                "--index",
                str(index),
                "--size",
                "64",
                "--workers",
                str(workers),
                "--out",
                str(images),
            ],
        ),
    ]
    output_gb = records * 64 * 64 / 1e9
    print(f"simulated corpus: {records:,} records; output array {records:,} x 64 x 64 = {output_gb:.2f} GB")
    peak_anon = 0
    for name, argv in runs:
        seconds, anon, other = run_measured(argv)
        peak_anon = max(peak_anon, anon)
        print(
            f"{name:<10} {seconds:8.1f} s  {records / seconds:10,.0f} records/s  "
            f"peak anonymous {anon / 1e9:5.2f} GB  peak file-backed {other / 1e9:5.2f} GB"
        )
    print(f"index peak memory beyond the output array: {peak_anon / 1e9:.2f} GB (anonymous, whole process tree)")
    print(f"index.csv: {index.stat().st_size / 1e6:.1f} MB")
    return images


def make_loader(images: np.ndarray, in_memory: bool | None, batch_size: int):
    from hccr.training.loader import BatchLoader

    labels = np.random.default_rng(0).integers(0, 3755, len(images))
    return BatchLoader(
        images,
        np.arange(len(images)),
        labels,
        batch_size,
        shuffle=True,
        seed=0,
        mean=0.1,
        std=0.25,
        augment_cfg={"enabled": True, "degrees": 8.0, "translate": 0.08, "scale": 0.1, "shear": 5.0},
        in_memory=in_memory,
    )


def endless(loader):
    """Batches forever, epoch after epoch (the first batch of an epoch draws its affines)."""
    while True:
        yield from loader
        loader.set_epoch(loader.epoch + 1)


def bench_loader(images_path: Path, batches: int, batch_size: int, windows: int = 7) -> None:
    import torch

    torch.set_num_threads(1)
    # The array was just written: let the kernel finish writing it back first, as it has when a
    # training job reads what an earlier resize job wrote (faults on pages under writeback wait).
    with open(images_path, "rb+") as handle:
        os.fsync(handle.fileno())
    big = np.load(images_path, mmap_mode="r")
    small = np.random.default_rng(0).integers(0, 256, size=(13500, 64, 64), dtype=np.uint8)
    start = time.perf_counter()
    default = make_loader(big, None, batch_size)  # what training does with this array on this host
    setup = time.perf_counter() - start
    streams = {
        "a": endless(make_loader(small, True, batch_size)),
        "b": endless(make_loader(big, False, batch_size)),
        "c": endless(default),
    }
    rates: dict[str, list[float]] = {name: [] for name in streams}
    for name in streams:
        next(streams[name])  # warm-up
    for _ in range(windows):  # interleaved, so a change in the machine's load hits both alike
        for name, stream in streams.items():
            start = time.perf_counter()
            for _ in range(batches):
                next(stream)
            rates[name].append(batches * batch_size / (time.perf_counter() - start))
    a, b, c = (statistics.median(rates[name]) for name in "abc")
    print(f"loader (a) 13,500 x 64 x 64 copied in memory:      {a:10,.0f} images/s (1 thread, augment on)")
    print(f"loader (b) {len(big):,} x 64 x 64 memory-mapped:  {b:10,.0f} images/s (1 thread + reader, augment on)")
    print(f"loader ratio (b)/(a): {b / a:.2f} (median of {windows} interleaved windows of {batches} batches)")
    how = (
        "memory-mapped (over a quarter of available memory)"
        if default.source is not None
        else (f"copied into memory in {setup:.1f} s (fits a quarter of available memory)")
    )
    print(f"loader (c) {len(big):,} x 64 x 64, BatchLoader's default: {c:10,.0f} images/s; {how}")
    print(f"loader ratio (c)/(a): {c / a:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--per-file", type=int, default=4000, help="records per simulated writer file")
    parser.add_argument("--workers", type=int, default=2, help="processes of the resize step")
    parser.add_argument("--batches", type=int, default=60, help="batches per timed loader window")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timed decode passes (median)")
    parser.add_argument("--keep", default=None, help="work in this folder and keep it")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (tests)")
    args = parser.parse_args()
    if args.smoke:
        args.records, args.per_file, args.batches, args.repeats = 2400, 400, 5, 1
    if args.records < args.per_file or args.per_file < 1:
        parser.error("--records must be >= --per-file >= 1")
    print(f"machine: {os.cpu_count()} CPUs (shared with other jobs: figures are under contention)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still deletes its GBs in /tmp
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_casia."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        templates = make_templates(work / "templates", args.per_file)
        bench_decode(templates[0], args.repeats)
        records = simulate_corpus(work / "corpus", templates, args.records, args.per_file)
        images = bench_index(work, work / "corpus", records, args.workers)
        bench_loader(images, args.batches, args.batch_size)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
