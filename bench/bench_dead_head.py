"""How many of a trained head's hidden units are dead: zero for every training image.

    python bench/bench_dead_head.py --images data/processed/images_96.npy \
        --index data/interim/index.csv --split data/processed/splits/holdout/small.csv \
        models/runs/efficientnet_scratch/small/checkpoint.pt [more checkpoints ...] [--threads 1]

For each checkpoint (any model whose head has a ReLU: the EfficientNet head, the GRU head),
the model is rebuilt in inference mode, the split's training images are fed through it as
the trainer normalised them, and the units after the head's first ReLU are counted: a unit
that is zero for every image passes no gradient and can never learn again. Prints per
checkpoint: the start, whether the head has a BatchNorm, units, dead units and their share,
and the checkpoint's validation accuracy. docs/transfer.md ("A dead head") was measured so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def dead_units(model: nn.Module, loader) -> tuple[int, int]:
    """(units, units that are zero for every batch) after the head's first ReLU."""
    relu = next(m for m in model.head.modules() if isinstance(m, nn.ReLU))
    fired: list[torch.Tensor] = []
    handle = relu.register_forward_hook(lambda _m, _i, out: fired.append((out > 0).flatten(1).any(dim=0)))
    with torch.no_grad():
        for x, _ in loader:
            model(x)
    handle.remove()
    alive = torch.stack(fired).any(dim=0)
    return int(alive.numel()), int((~alive).sum())


def measure(path: Path, data) -> dict:
    """Dead hidden units of one checkpoint on the training images of `data` (a RunData)."""
    from hccr.models import checkpoint
    from hccr.training.loader import BatchLoader

    model, meta = checkpoint.load_model(path)
    loader = BatchLoader(
        data.images,
        data.train_ids,
        data.train_labels,
        128,
        shuffle=False,
        seed=0,
        mean=meta["normalize"]["mean"],
        std=meta["normalize"]["std"],
    )
    units, dead = dead_units(model, loader)
    return {
        "checkpoint": str(path),
        "start": meta.get("start"),
        "batchnorm": any(isinstance(m, nn.BatchNorm1d) for m in model.head.modules()),
        "units": units,
        "dead": dead,
        "val_accuracy": meta.get("val_accuracy"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--images", required=True, type=Path)
    parser.add_argument("--index", required=True, type=Path)
    parser.add_argument("--split", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from hccr.training.inputs import load_run_data

    data = load_run_data(args.images, args.index, args.split)  # read once, scored per checkpoint
    rows = [measure(path, data) for path in args.checkpoints]
    _common.header("dead head units")
    print("| checkpoint | start | head BatchNorm | units | dead | dead share | val acc |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        val = f"{100 * r['val_accuracy']:.1f} %" if r["val_accuracy"] is not None else "-"
        print(
            f"| {r['checkpoint']} | {r['start']} | {'yes' if r['batchnorm'] else 'no'} | {r['units']} "
            f"| {r['dead']} | {100 * r['dead'] / r['units']:.1f} % | {val} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
