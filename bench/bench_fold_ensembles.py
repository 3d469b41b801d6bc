"""Test-time augmentation and seed ensembles across writer folds (issue 14's "stronger default").

    python bench/bench_fold_ensembles.py --project . --run cnn/full --folds 10 \
        [--also 'runs/seed43/fold{fold}' ...] [--threads 2]

Reads a finished writer-CV project (`subsets.protocol: writer_cv`): each fold's checkpoint
`models/cv/{model}/{size}/fold{i}/checkpoint.pt` and split
`data/processed/splits/cv/fold{i}/holdout/{size}.csv`. Each `--also` pattern names one more
checkpoint folder per fold (the same recipe trained with another seed, by
`python -m hccr.training.train ... --seed 43 --out runs/seed43/fold{i}`). For every fold it scores
the validation writers (where a choice may be made) and the test writers (reported once), as:
the fold's model alone; test-time augmentation, averaging softmax over the image and its 1-px
shifts (4) or its 0.93x / 1.07x rescalings (2); and the ensemble of the fold's model with the
`--also` models (softmax averaged), and each `--also` model alone (the seed-to-seed spread).
`--tta none` skips the augmented passes. Prints a table per fold and the means; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, set_threads  # noqa: E402
from hccr.data.arrays import load_images  # noqa: E402
from hccr.data.index import read_index  # noqa: E402
from hccr.data.splits import read_split  # noqa: E402
from hccr.evaluation.writer_cv import fold_dir  # noqa: E402
from hccr.models.checkpoint import load_model  # noqa: E402

PAD = 2  # px of black around the glyph before a shift, so nothing wraps round


def shifted(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    padded = F.pad(x, (PAD, PAD, PAD, PAD))
    return torch.roll(padded, shifts=(dy, dx), dims=(2, 3))[:, :, PAD:-PAD, PAD:-PAD]


def rescaled(x: torch.Tensor, factor: float) -> torch.Tensor:
    theta = torch.tensor([[1 / factor, 0, 0], [0, 1 / factor, 0]], dtype=x.dtype).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


VIEWS = {
    "shift": [lambda x, d=d: shifted(x, *d) for d in ((1, 0), (-1, 0), (0, 1), (0, -1))],
    "scale": [lambda x, f=f: rescaled(x, f) for f in (0.93, 1.07)],
}


def softmax(model: torch.nn.Module, pixels: np.ndarray, mean: float, std: float, view=None) -> np.ndarray:
    # Transformed in 0..1 pixel space, where black (0) is the background the pads add.
    x = torch.from_numpy(pixels).float().unsqueeze(1) / 255.0
    x = view(x) if view is not None else x
    x = (x - mean) / std
    with torch.no_grad():
        return torch.cat([model(x[i : i + 512]).softmax(1) for i in range(0, len(x), 512)]).numpy()


def stats(meta: dict) -> tuple[float, float]:
    return meta["normalize"]["mean"], meta["normalize"]["std"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=".", help="a finished writer-CV project")
    parser.add_argument("--run", default="cnn/full", help="model/size of the writer_cv block")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--also", action="append", default=[], help="another seed's folder per fold ({fold})")
    parser.add_argument("--tta", nargs="*", default=list(VIEWS), choices=[*VIEWS, "none"], help="TTA kinds")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    header("test-time augmentation and seed ensembles over writer folds", {"threads": str(args.threads)})
    project = Path(args.project)
    model_name, size = args.run.split("/")
    images = load_images(project / "data/processed/images_64.npy")
    labels = read_index(project / "data/interim/index.csv")["label"].to_numpy()
    tta = [kind for kind in args.tta if kind != "none"]
    also = [f"also {k + 1} alone" for k in range(len(args.also))]
    columns = ["alone", *(f"TTA {kind}" for kind in tta), *also] + (["seed ensemble"] if args.also else [])
    totals: dict[str, dict[str, list[float]]] = {role: {c: [] for c in columns} for role in ("val", "test")}
    print("fold | role | " + " | ".join(columns))
    started = time.perf_counter()
    for fold in range(args.folds):
        folders = [fold_dir(project / "models/cv", model_name, size, fold)]
        folders += [Path(pattern.format(fold=fold)) for pattern in args.also]
        models = [load_model(folder / "checkpoint.pt") for folder in folders]
        split = read_split(project / f"data/processed/splits/cv/fold{fold}/holdout/{size}.csv", len(labels))
        for role in ("val", "test"):
            ids = np.sort(split.loc[split["role"] == role, "id"].to_numpy())
            pixels, truth = np.ascontiguousarray(images[ids]), labels[ids]
            # load_model returns each model in eval mode; TTA is scored for the fold's own model only.
            alone = [softmax(model, pixels, *stats(meta)) for model, meta in models]
            model, meta = models[0]
            probabilities = {
                "alone": alone[0],
                **{
                    f"TTA {kind}": alone[0] + sum(softmax(model, pixels, *stats(meta), view) for view in VIEWS[kind])
                    for kind in tta
                },
                **dict(zip(also, alone[1:], strict=True)),
            }
            if args.also:
                probabilities["seed ensemble"] = sum(alone)
            row = []
            for column in columns:
                accuracy = 100 * float((probabilities[column].argmax(1) == truth).mean())
                totals[role][column].append(accuracy)
                row.append(f"{accuracy:.2f}")
            print(f"{fold} | {role} | " + " | ".join(row), flush=True)
    for role in ("val", "test"):
        means = " | ".join(f"{np.mean(totals[role][c]):.3f}" for c in columns)
        print(f"mean | {role} | {means}")
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
