"""Two framings (issue 14): a model trained on ink-box-framed glyphs, alone and beside predict's.

    # 1. the archive and its predict-path views, every file framed by its ink box
    python bench/bench_two_framings.py prepare --images data/processed/images_64.npy \
        --views-settings '{...params views block...}' --out-dir runs/reframed
    # 2. the cnn recipe trained on them (the same command as the grid's, other arrays)
    python -m hccr.training.train --model cnn --size full --images runs/reframed/images_64.npy \
        --views runs/reframed/views_64.npy --index data/interim/index.csv \
        --split data/processed/splits/holdout/full.csv --config-json cfg.json --seed 42 --out runs/reframed/cnn
    # 3. both models through predict's path, and their mean softmax
    python bench/bench_two_framings.py score --cell models/runs/cnn/full/checkpoint.pt \
        --reframed runs/reframed/cnn/checkpoint.pt --images data/processed/images_64.npy \
        --index data/interim/index.csv --split data/processed/splits/holdout/full.csv --role val

`hccr predict` frames a user's file as a dataset cell (`canonical_glyph`): the whole page is the
cell, so a glyph on a padded page comes out smaller than the writer drew it, and no framing can
tell a padded cell from a small character. The other framing crops every file, the archive's
own too, to its ink box and scales that box to the archive's typical size for its shape
(`Framing(native_shortcut=False, frame="reframed")`): a padded or shifted file then gives the
same glyph as the original. A model used that way must be trained that way, so `prepare` frames
the archive and renders its views with it. `score` prints, per transform, the accuracy of the
cell-framed model, of the box-framed model, and of both (their softmax averaged), and for both
the discordant pairs against the untransformed files with McNemar's p. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, set_threads  # noqa: E402
from bench_framing_ablation import TRANSFORMS  # noqa: E402
from hccr.atomic import atomic_path  # noqa: E402
from hccr.config import json_object_arg  # noqa: E402
from hccr.data.reframe import reframe_archive  # noqa: E402
from hccr.data.views import ViewSettings, render_views  # noqa: E402
from hccr.errors import DataError  # noqa: E402
from hccr.evaluation.paired import mcnemar_exact  # noqa: E402
from hccr.evaluation.robustness import read_test_set  # noqa: E402
from hccr.evaluation.transforms import make_transform  # noqa: E402
from hccr.serving.predict import Predictor, load_predictor  # noqa: E402
from hccr.serving.preprocess import FRAMINGS  # noqa: E402

BY_INK_BOX = FRAMINGS["ink_box"]


def save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def prepare(args) -> int:
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    framed, refused = reframe_archive(args.images, "ink_box", 64, args.filter, args.workers)
    save_array(out / "images_64.npy", framed)
    print(f"images_64.npy: {len(framed)} glyphs framed by their ink box, {len(refused)} refused (kept)", flush=True)
    settings = ViewSettings.from_dict(json_object_arg(args.views_settings, "--views-settings"))
    views, families = render_views(args.images, settings, 64, args.filter, args.workers, framing=BY_INK_BOX)
    save_array(out / "views_64.npy", views)
    print(f"views_64.npy: {len(views)} views, {families.count('kept')} refused (kept)")
    print(f"seconds: {time.perf_counter() - started:.1f}")
    return 0


def probabilities(predictor: Predictor, files: list[bytes]) -> np.ndarray:
    """(N, classes) softmax through the predictor's framing; a file it refuses scores all zeros."""
    size = predictor.input_size
    sized = np.zeros((len(files), len(predictor.framings), size, size), dtype=np.uint8)
    refused = np.zeros(len(files), dtype=bool)
    for row, data in enumerate(files):
        try:
            sized[row] = predictor.prepare(data, f"file {row}")[1]
        except DataError:
            refused[row] = True
    probs = np.concatenate(
        [predictor.class_probabilities(sized[start : start + 256]) for start in range(0, len(files), 256)]
    )
    probs[refused] = 0.0
    return probs


def score(args) -> int:
    threads = set_threads(args.threads)
    test = read_test_set(args.images, args.index, args.split, args.limit, args.role)
    cell, by_box = load_predictor(args.cell, args.threads), load_predictor(args.reframed, args.threads)
    by_box.framings = (BY_INK_BOX,)  # a checkpoint trained outside the grid does not say its framing
    if cell.characters != by_box.characters:
        raise DataError(f"{args.cell} and {args.reframed} have different classes")
    truth = np.array([cell.characters.index(character) for character in test.characters])
    header(
        "two framings: accuracy (%) through predict's path, per transform",
        {
            "cell": args.cell,
            "ink box": args.reframed,
            f"{args.role} images": str(len(test.ids)),
            "threads": str(threads),
        },
    )
    print("| transform | cell | ink box | both | both: only original right / only transformed right | p |")
    print("| --- | --- | --- | --- | --- | --- |")
    baseline = None
    for name in args.transforms:
        transform = make_transform(name.split()[0], TRANSFORMS[name])
        files = [transform(glyph, int(image_id)) for glyph, image_id in zip(test.glyphs, test.ids, strict=True)]
        p_cell, p_box = probabilities(cell, files), probabilities(by_box, files)
        right = {key: probs.argmax(axis=1) == truth for key, probs in (("cell", p_cell), ("box", p_box))}
        both = (p_cell + p_box).argmax(axis=1) == truth
        baseline = both if baseline is None else baseline
        paired = mcnemar_exact(baseline, both)
        print(
            f"| {name} | {100 * right['cell'].mean():.2f} | {100 * right['box'].mean():.2f} | {100 * both.mean():.2f} "
            f"| {paired.only_a} / {paired.only_b} | {paired.p_value:.2g} |",
            flush=True,
        )
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("prepare", help="frame the archive and its views by the ink box")
    pre.add_argument("--images", required=True, help="data/processed/images_64.npy")
    pre.add_argument("--views-settings", default="{}", help="params.yaml's views block (inline JSON or a file)")
    pre.add_argument("--filter", default="bilinear")
    pre.add_argument("--workers", type=int, default=None)
    pre.add_argument("--out-dir", required=True, help="writes images_64.npy and views_64.npy here")
    sc = sub.add_parser("score", help="both models through predict's path, alone and averaged")
    sc.add_argument("--cell", required=True, help="a model trained on cell-framed glyphs (the grid's)")
    sc.add_argument("--reframed", required=True, help="a model trained on `prepare`'s arrays")
    sc.add_argument("--images", required=True, help="the native 64 px array")
    sc.add_argument("--index", required=True)
    sc.add_argument("--split", required=True)
    sc.add_argument("--role", choices=("test", "val"), default="val")
    sc.add_argument("--limit", type=int, default=0, help="an even spread of this many images (0: all)")
    sc.add_argument("--transforms", nargs="+", default=list(TRANSFORMS), choices=list(TRANSFORMS))
    sc.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    return prepare(args) if args.command == "prepare" else score(args)


if __name__ == "__main__":
    sys.exit(main())
