"""The loader comparison: torchvision ImageFolder + PIL transforms vs hccr.training.loader.BatchLoader.

    python bench/bench_loader.py [--archive ../shared/data/chinese-mnist.zip] [--batches 60]
        [--batch-size 128] [--workers 2] [--threads N] [--device cpu|cuda] [--smoke]
        [--no-steps] [--step-batches 3] [--synthetic WRITERS] [--windows 5] [--default-malloc]

Both loaders produce the same thing: normalised (B, 1, 64, 64) float batches of the real
JPEGs with the same small random affine (rotation +-8 deg, translate +-8 %, scale +-10 %,
shear +-5 deg, bilinear, black fill, no flips) and the same mean/std. (a) is the usual way:
`datasets.ImageFolder` over a tree of per-class symlinks to the JPEGs, PIL
`RandomAffine` -> `ToTensor` -> `Normalize`, a `DataLoader` with worker processes; (b) is
`BatchLoader` over the decoded uint8 array (one gather, then grid_sample in blocks of 32
images), timed at 1 torch thread and at `--threads` (it runs inside the training process,
on its threads; on a busy machine extra threads can be slower). Each figure is the median
of `--windows` timed windows. Both run with glibc malloc tuned as hccr's training
processes tune it (hccr.device.retain_freed_memory; `--default-malloc` to compare).
Prints images/s of each, the ratios, and the training step's images/s for the cnn and
EfficientNetV2-S at 64 px on the same batches (forward + backward + optimizer step), to show which
side is the bottleneck.
Asserts nothing; `--smoke` runs it on a tiny synthetic set.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def load_gray(path: str):
    """ImageFolder's loader, but grayscale (the default converts to RGB)."""
    from PIL import Image

    with open(path, "rb") as handle:
        return Image.open(handle).convert("L")


def symlink_tree(dataset: _common.Dataset, dest: Path) -> Path:
    """An ImageFolder tree dest/<code>/<file>.jpg of symlinks into the raw folder."""
    for code, rel in zip(dataset.table["code"], dataset.table["path"], strict=False):
        folder = dest / f"{int(code):02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / Path(rel).name).symlink_to((dataset.raw / rel).resolve())
    return dest


def torchvision_loader(
    root: Path,
    mean: float,
    std: float,
    batch_size: int,
    workers: int,
    pin: bool,
    seed: int,
):
    import torch
    from torchvision import datasets, transforms

    aug = _common.AUGMENT
    transform = transforms.Compose(
        [
            transforms.RandomAffine(
                degrees=aug["degrees"],
                translate=(aug["translate"], aug["translate"]),
                scale=(1 - aug["scale"], 1 + aug["scale"]),
                shear=aug["shear"],
                interpolation=transforms.InterpolationMode.BILINEAR,
                fill=0,
            ),
            transforms.ToTensor(),
            transforms.Normalize([mean], [std]),
        ]
    )
    folder = datasets.ImageFolder(str(root), transform=transform, loader=load_gray)
    return torch.utils.data.DataLoader(
        folder,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin,
        drop_last=False,
        generator=torch.Generator().manual_seed(seed),
    )


def cycle(make_iter):
    """Batches from fresh epochs for as long as asked."""
    while True:
        yield from make_iter()


def time_batches(batches, count: int, device, to_device: bool, windows: int = 1) -> tuple[float, int, float]:
    """images/s over `count` batches after one warm-up batch (worker start-up excluded).

    With `windows` > 1 it times that many back-to-back windows of `count` batches and reports
    the median one: this VM's speed drifts by 2x from second to second, and a median of
    short windows is steadier than one long one.
    """
    import statistics

    import torch

    first = next(batches)
    if to_device:
        first[0].to(device, non_blocking=True)
    _common.synchronize(device)
    results = []
    for _ in range(windows):
        images = 0
        start = time.perf_counter()
        for _ in range(count):
            x, y = next(batches)
            if to_device:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
            images += int(y.shape[0])
        _common.synchronize(device)
        seconds = time.perf_counter() - start
        results.append((images / seconds, images, seconds))
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.ndim == 4
    return statistics.median_low(results)


def step_speed(name: str, batches: list, device, budget_s: float) -> tuple[float, int]:
    """Training images/s of a model on pre-made batches (the hccr.training.train step recipe)."""
    import torch

    from hccr.data.layout import CHINESE_MNIST
    from hccr.device import Runtime
    from hccr.models import create

    cfg = _common.model_config(name, 64)
    model, _ = create(name, cfg, pretrained="none", num_classes=len(CHINESE_MNIST))
    cuda = torch.device(device).type == "cuda"
    # The memory layout hccr.training.train uses on this device (hccr.device.Runtime decides).
    channels_last = Runtime(device=torch.device(device)).channels_last
    step = _common.TrainStep(
        model,
        _common.model_settings(name, cfg),
        device,
        amp=torch.bfloat16 if cuda else None,
        channels_last=channels_last,
    )
    position = {"i": 0}

    def one() -> int:
        x, y = batches[position["i"] % len(batches)]
        position["i"] += 1
        return step.train(x, y)

    speed, timed, _ = _common.timed_loop(one, warmup=1, steps=len(batches), budget_s=budget_s, device=device)
    return speed, timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--archive",
        default=_common.default_archive(),
        help="the Kaggle archive.zip (default: %(default)s)",
    )
    parser.add_argument("--batches", type=int, default=60, help="timed batches per loader")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for (a)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the main process (default: torch's)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu | cuda (BatchLoader keeps the array on the GPU)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--windows",
        type=int,
        default=5,
        help="timed windows of --batches per loader; the median is reported",
    )
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc malloc at its defaults (hccr.device.setup tunes it, as here)",
    )
    parser.add_argument("--no-steps", action="store_true", help="skip the training-step comparison")
    parser.add_argument("--step-batches", type=int, default=3, help="timed training steps per model")
    parser.add_argument(
        "--step-budget",
        type=float,
        default=30.0,
        help="max seconds of timed steps per model",
    )
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="WRITERS",
        help="use the synthetic generator (WRITERS x 10 samples) instead of the archive",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny synthetic data, few batches (for the tests)",
    )
    args = parser.parse_args(argv)

    import torch

    from hccr.errors import HccrError
    from hccr.training.augment import AugmentConfig
    from hccr.training.loader import BatchLoader, compute_stats

    if args.windows < 1 or args.batches < 1:
        parser.error("--windows and --batches must be >= 1")
    if args.smoke:
        args.batches = min(args.batches, 3)
        args.windows = min(args.windows, 2)
        args.batch_size = min(args.batch_size, 16)
        args.step_batches = min(args.step_batches, 1)
    from hccr.device import retain_freed_memory

    # Both loaders run under the allocator setting hccr's training processes use (the
    # DataLoader workers fork from this process and inherit it).
    malloc = (
        "glibc defaults"
        if args.default_malloc
        else ("retain freed memory" if retain_freed_memory() else "defaults (not glibc)")
    )
    threads = _common.set_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    _common.header(
        "loader: torchvision ImageFolder + PIL vs hccr BatchLoader",
        {
            "device": str(device),
            "torch threads (main process)": str(threads),
            "batch": str(args.batch_size),
            "malloc": malloc,
            "timing": f"median of {args.windows} windows of {args.batches} batches",
            "augment": str(AugmentConfig.from_dict(_common.AUGMENT)),
        },
    )
    try:
        with _common.prepared_data(args.archive, args.smoke, synthetic_writers=args.synthetic) as data:
            print(f"# data: {data.source}, {len(data.images)} images of {data.images.shape[1]} px")
            ids = data.table["id"].to_numpy()
            labels = data.table["label"].to_numpy()
            mean, std = compute_stats(data.images, ids)

            with tempfile.TemporaryDirectory(prefix="hccr-imagefolder-") as tree:
                root = symlink_tree(data, Path(tree))
                loader = torchvision_loader(
                    root,
                    mean,
                    std,
                    args.batch_size,
                    args.workers,
                    pin=cuda,
                    seed=args.seed,
                )
                tv_batches = cycle(loader.__iter__)
                tv_speed, tv_images, tv_seconds = time_batches(tv_batches, args.batches, device, cuda, args.windows)
                # Stop the persistent workers (they would keep prefetching into (b)'s timing).
                tv_batches.close()
                del loader, tv_batches
                gc.collect()
            print(
                f"(a) torchvision ImageFolder+PIL, {args.workers} workers:           {tv_speed:10.0f} images/s "
                f"({tv_images} images in {tv_seconds:.2f} s)"
            )

            batch_loader = BatchLoader(
                data.images,
                ids,
                labels,
                args.batch_size,
                shuffle=True,
                seed=args.seed,
                device=device,
                mean=mean,
                std=std,
                augment_cfg=_common.AUGMENT,
            )
            epochs = iter(range(10**9))

            def one_epoch():
                batch_loader.set_epoch(next(epochs))
                return iter(batch_loader)

            where = (
                "GPU-resident array"
                if cuda and batch_loader.resident
                else ("pinned host array" if cuda else "host array")
            )
            # The loader runs inside the training process, on its torch threads. On a loaded
            # machine extra intra-op threads spin against other processes, so show 1 thread too.
            best = 0.0
            for loader_threads in sorted({1, threads}):
                torch.set_num_threads(loader_threads)
                bl_speed, bl_images, bl_seconds = time_batches(
                    cycle(one_epoch), args.batches, device, False, args.windows
                )
                best = max(best, bl_speed)
                print(
                    f"(b) hccr BatchLoader ({where}, {loader_threads} thread{'s' * (loader_threads > 1)}): "
                    f"{bl_speed:10.0f} images/s ({bl_images} images in {bl_seconds:.2f} s)"
                    f" -> ratio (b)/(a) {bl_speed / tv_speed:.1f}x"
                )
            torch.set_num_threads(threads)
            bl_speed = best
            print(f"ratio (b)/(a), best: {bl_speed / tv_speed:.1f}x  (target >= 20x)")

            if not args.no_steps:
                batch_loader.set_epoch(0)
                batches = [b for _, b in zip(range(args.step_batches), iter(batch_loader), strict=False)]
                from hccr.device import Runtime

                layout = " + channels_last" if Runtime(device=device).channels_last else ""
                precision = ("bf16 autocast" if cuda else "float32") + layout
                for name in ("cnn", "efficientnet"):
                    speed, timed = step_speed(name, batches, device, args.step_budget)
                    print(
                        f"train step {name:<12} 64 px, batch {args.batch_size}, {precision}: {speed:10.1f} images/s "
                        f"({timed} timed steps) -> loader/step {bl_speed / speed:.0f}x"
                    )
            print(f"# load average at end (1/5/15 min): {_common.load_average()}")
    except HccrError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
