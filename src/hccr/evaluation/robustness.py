"""Score a model on the test writers' images as users bring them (issue 14).

    python -m hccr.evaluation.robustness --model models/export/model.onnx \
        --images data/processed/images_64.npy --index data/interim/index.csv \
        --split data/processed/splits/holdout/full.csv --settings-json '{...robustness block...}' \
        --out-json reports/robustness/robustness.json --out-metrics reports/robustness/metrics.json \
        --out-figure reports/robustness/examples.png

Every test image is transformed (`hccr.evaluation.transforms`: inverted, enlarged RGB,
shifted and padded, JPEG-recompressed, on textured paper), encoded as a file, and read back
through the same functions as `hccr predict` (`predict_sources`: decode, `canonical_glyph`,
resize, batched forward pass). Each transform gets one accuracy and McNemar's exact test
against the untransformed images (`hccr.evaluation.paired`), on the same images in the same
order. Outputs (atomic): a details JSON (settings, per-transform accuracy, discordant counts,
p-value, errors), a scalars-only metrics JSON for DVC, and a figure of example images: each
transform's file and the 64-px glyph that predict made of it.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from hccr.atomic import atomic_path, write_json
from hccr.config import json_object_arg
from hccr.data.arrays import load_images
from hccr.data.index import read_index
from hccr.data.splits import read_split
from hccr.errors import DataError, HccrError, reports_errors
from hccr.evaluation.paired import mcnemar_exact
from hccr.evaluation.transforms import TRANSFORMS, make_transform
from hccr.serving.predict import Predictor, Source, load_predictor, predict_sources

BASELINE = "original"
EXAMPLE_COLUMNS = 6  # test images shown per transform in the figure
THUMB = 96  # px per figure cell


@dataclass
class TestSet:
    ids: np.ndarray
    glyphs: np.ndarray  # uint8 (N, 64, 64)
    characters: list[str]


def read_test_set(
    images_path: str | Path, index_path: str | Path, split_path: str | Path, limit: int = 0, role: str = "test"
) -> TestSet:
    """The split's `role` rows (all of them, or an even spread of `limit`) with their true characters.

    `role="val"` scores the validation writers: what settings are chosen on, never the test writers.
    """
    images = load_images(images_path)
    if images.shape[1:] != (64, 64):
        raise DataError(f"{images_path}: the robustness test needs the native 64 px array, got {images.shape[1:]}")
    index = read_index(index_path)
    if len(index) != len(images):
        raise DataError(f"{index_path}: {len(index)} rows but {images_path} has {len(images)} images")
    split = read_split(split_path, len(index))
    ids = split.loc[split["role"] == role, "id"].to_numpy()
    if ids.size == 0:
        raise DataError(f"{split_path}: no {role} rows (the robustness test needs held-out writers)")
    if limit and limit < ids.size:
        ids = ids[np.linspace(0, ids.size - 1, limit).round().astype(int)]
    return TestSet(ids, np.asarray(images[ids]), index["character"].astype(str).to_numpy()[ids].tolist())


def transforms_from_settings(settings: Mapping) -> dict[str, Callable[[np.ndarray, int], bytes]]:
    """The baseline and every enabled transform of a `robustness:` params block, in TRANSFORMS order."""
    blocks = settings.get("transforms", {})
    unknown = sorted(set(blocks) - set(TRANSFORMS))
    if unknown:
        raise HccrError(f"robustness.transforms: unknown transform(s) {unknown}; choose from {', '.join(TRANSFORMS)}")
    chosen = {BASELINE: make_transform(BASELINE)}
    for name in TRANSFORMS[1:]:
        block = blocks.get(name)
        if block is not None and block.get("enabled", True):
            chosen[name] = make_transform(name, block)
    return chosen


def score(
    predictor: Predictor,
    test: TestSet,
    transform: Callable[[np.ndarray, int], bytes],
    name: str,
    batch_size: int = 256,
) -> tuple[np.ndarray, int]:
    """(correct per image, files predict refused) for one transform."""
    sources = (
        Source(f"{name}:{image_id}", read=lambda g=glyph, i=image_id: transform(g, int(i)))
        for image_id, glyph in zip(test.ids, test.glyphs, strict=True)
    )
    predicted, refused = [], 0
    bar = tqdm(total=len(test.ids), desc=name, unit="img", file=sys.stderr)
    for prediction in predict_sources(predictor, sources, top_k=1, batch_size=batch_size):
        refused += prediction.error is not None
        predicted.append(prediction.character)  # "" for a refused file: counted wrong
        bar.update(1)
    bar.close()
    correct = np.array([p == t for p, t in zip(predicted, test.characters, strict=True)])
    return correct, refused


def evaluate(predictor: Predictor, test: TestSet, transforms: Mapping[str, Callable], batch_size: int = 256) -> dict:
    """Per transform: accuracy, change against the baseline (points), McNemar, refused files, seconds."""
    results, baseline = {}, None
    for name, transform in transforms.items():
        started = time.perf_counter()
        correct, refused = score(predictor, test, transform, name, batch_size)
        baseline = correct if baseline is None else baseline
        test_result = mcnemar_exact(baseline, correct)
        results[name] = {
            "accuracy": float(correct.mean()),
            "n": int(correct.size),
            "delta_points": float(100 * (correct.mean() - baseline.mean())),
            "only_original_right": test_result.only_a,
            "only_transformed_right": test_result.only_b,
            "mcnemar_p": test_result.p_value,
            "refused": refused,
            "seconds": round(time.perf_counter() - started, 2),
        }
    return results


def example_figure(predictor: Predictor, test: TestSet, transforms: Mapping[str, Callable], path: str | Path) -> None:
    """PNG grid: one row per transform; per example, the file as given and predict's 64-px glyph."""
    picks = np.linspace(0, len(test.ids) - 1, min(EXAMPLE_COLUMNS, len(test.ids))).round().astype(int)
    label_width, gap = 90, 4
    width = label_width + len(picks) * (2 * THUMB + gap) + gap
    height = len(transforms) * (THUMB + gap) + gap
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, (name, transform) in enumerate(transforms.items()):
        y = gap + row * (THUMB + gap)
        draw.text((4, y + THUMB // 2 - 6), name, fill=(0, 0, 0))
        for column, pick in enumerate(picks):
            data = transform(test.glyphs[pick], int(test.ids[pick]))
            given = Image.open(io.BytesIO(data)).convert("RGB").resize((THUMB, THUMB), Image.Resampling.NEAREST)
            try:
                glyph, _ = predictor.prepare(data, f"{name}:{test.ids[pick]}")
                framed = Image.fromarray(glyph).convert("RGB").resize((THUMB, THUMB), Image.Resampling.NEAREST)
            except HccrError:
                framed = Image.new("RGB", (THUMB, THUMB), (255, 0, 0))
            x = label_width + column * (2 * THUMB + gap)
            sheet.paste(given, (x, y))
            sheet.paste(framed, (x + THUMB, y))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


def metrics_of(results: Mapping[str, dict]) -> dict:
    """Scalars for `dvc metrics`: accuracy, change in points and p-value per transform."""
    return {
        name: {"accuracy": r["accuracy"], "delta_points": r["delta_points"], "mcnemar_p": r["mcnemar_p"]}
        for name, r in results.items()
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hccr robustness", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="exported model.onnx or a checkpoint.pt")
    p.add_argument("--images", required=True, help="data/processed/images_64.npy (native glyphs)")
    p.add_argument("--index", required=True, help="data/interim/index.csv")
    p.add_argument("--split", required=True, help="a split file with the test writers' rows")
    p.add_argument(
        "--role",
        choices=("test", "val"),
        default="test",
        help="whose images: the test writers, or (to choose settings) the validation writers",
    )
    p.add_argument("--settings-json", required=True, help="params.yaml's robustness block (inline JSON or a file)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="images per forward pass (default: settings' batch_size)"
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch / onnxruntime")
    p.add_argument("--out-json", required=True, help="details: settings, per-transform results")
    p.add_argument("--out-metrics", required=True, help="scalars only, for dvc metrics")
    p.add_argument("--out-figure", required=True, help="PNG of example transformed images")
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = json_object_arg(args.settings_json, "--settings-json")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    transforms = transforms_from_settings(settings)
    test = read_test_set(args.images, args.index, args.split, int(settings.get("limit", 0) or 0), args.role)
    predictor = load_predictor(args.model, args.threads)
    started = time.perf_counter()
    results = evaluate(predictor, test, transforms, args.batch_size or int(settings.get("batch_size", 256)))
    example_figure(predictor, test, transforms, args.out_figure)
    details = {
        "model": str(args.model),
        "n": len(test.ids),
        "role": args.role,
        "baseline": BASELINE,
        "settings": settings,
        "test": "McNemar exact (two-sided binomial on the discordant pairs, scipy.stats.binomtest)",
        "results": results,
        "seconds_total": round(time.perf_counter() - started, 2),
    }
    write_json(args.out_json, details)
    write_json(args.out_metrics, metrics_of(results))
    for name, r in results.items():
        print(
            f"{name:9s} {100 * r['accuracy']:6.2f} %  {r['delta_points']:+5.2f} pt  p={r['mcnemar_p']:.3g}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
