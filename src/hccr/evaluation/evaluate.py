"""Score a trained run on its validation rows (and test rows, when the split has them).

    python -m hccr.evaluation.evaluate --checkpoint models/runs/M/Z/checkpoint.pt \
        --train-summary models/runs/M/Z/train.json --images data/processed/images_S.npy \
        --index data/interim/index.csv --split data/processed/splits/SCHEME/Z.csv \
        --protocol writer --model M --size Z --batch-size 256 --bins 15 \
        --out-metrics reports/metrics/M/Z.json \
        --out-details reports/evaluation/M/Z/details.json \
        --out-predictions reports/evaluation/M/Z/predictions.csv

Writes three artifacts (atomically; all three or none are replaced):
- metrics JSON of scalars only (what `dvc metrics` reads); `test` is left out when the split
  has no test rows (the `paper` protocol);
- details JSON: per-class accuracy keyed by character, confusion matrices (rows true),
  most frequent confusions, 95 % Wilson intervals, calibration bins, and a confusion summary
  (top-5 accuracy, most confused pairs, hardest classes: hccr.evaluation.confusion). Above
  `confusion.LARGE_LABEL_SET` classes (CASIA's 3,755) the full matrix is left out and the
  metrics JSON carries `top5_accuracy` too;
- predictions CSV, one row per scored image.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hccr.atomic import write_csv, write_json
from hccr.classes import Classes
from hccr.data import index as hccr_index
from hccr.data.arrays import StackedArrays, load_images
from hccr.data.splits import read_split
from hccr.errors import DataError, HccrError, reports_errors
from hccr.evaluation import confusion, metrics
from hccr.files import read_json_object
from hccr.normalization import check_stats, normalize

ROLES = ("val", "test")
PROTOCOLS = ("writer", "paper", "official")  # hccr.data.subset's; official: CASIA-HWDB's writer split
PREDICTION_COLUMNS = [
    "id",
    "writer",
    "role",
    "true",
    "predicted",
    "confidence",
    "true_character",
    "predicted_character",
]


@dataclass
class RolePredictions:
    """What the model said about the images of one role."""

    ids: np.ndarray
    writers: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    classes: Classes

    @property
    def probabilities(self) -> np.ndarray:
        return metrics.softmax(self.logits)

    @property
    def confidence(self) -> np.ndarray:
        """Max softmax per row, in blocks (at 3,755 classes the full float64 softmax is GBs)."""
        return metrics.max_softmax(self.logits)

    @property
    def predicted(self) -> np.ndarray:
        return self.logits.argmax(axis=1)


# ----------------------------------------------------------------------------- inputs


def check_classes(index: pd.DataFrame, path: str | Path, classes: Classes) -> None:
    """The index must define exactly the classes the checkpoint was trained on."""
    found = Classes.from_index(index, str(path))
    if found.characters != classes.characters:
        raise DataError(f"{path}: defines classes {found.text!r}, the checkpoint was trained on {classes.text!r}")


def read_train_summary(path: str | Path) -> dict[str, Any]:
    return read_json_object(path, "train summary")


def summary_parameters(summary: dict[str, Any]) -> int | None:
    """Total parameter count from train.json: a number, or {"total": n, ...} as hccr.training.train writes it."""
    value = summary.get("parameters")
    if isinstance(value, dict):
        value = value.get("total")
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


PRECISIONS = ("auto", "float32", "bfloat16")


def pick_precision(name: str, summary: dict[str, Any], device: torch.device) -> torch.dtype | None:
    """The autocast dtype to score with (None: float32). `auto` scores a run the way it
    trained: bf16 autocast if train.json says so and this device runs bf16 natively."""
    from hccr.device import cpu_bf16_supported

    wanted = name
    if name == "auto":
        wanted = "bfloat16" if str(summary.get("precision", "")).startswith("bfloat16") else "float32"
    if wanted == "float32":
        return None
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_bf16_supported()
    if not native:
        if name == "bfloat16":
            raise HccrError(f"--precision bfloat16: {device.type} has no native bf16 here")
        return None
    return torch.bfloat16


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise HccrError("--device cuda: no CUDA device is available")
    return torch.device(name)


def framed_inputs(paths: list[str], meta: dict, rows: int, label: str) -> np.ndarray | StackedArrays:
    """The arrays a checkpoint reads: one, or one per ensemble member's framing."""
    from hccr.models.ensemble import member_framings

    framings = member_framings(meta)
    if len(paths) != len(framings):
        raise DataError(
            f"{label}: reads {len(framings)} framing(s) ({', '.join(framings)}): pass one --images array each, "
            f"got {len(paths)}"
        )
    arrays = [load_images(path, rows=rows, size=int(meta["input_size"])) for path in paths]
    return arrays[0] if len(arrays) == 1 else StackedArrays(arrays)


# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    images: np.ndarray,
    ids: np.ndarray,
    mean: float,
    std: float,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    desc: str = "evaluate",
    amp_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Logits (len(ids), C) for images[ids], fed as ((uint8 / 255) - mean) / std.

    `amp_dtype`: run the model under autocast to this dtype (None: float32)."""
    device = torch.device(device)
    # channels_last: oneDNN's (and cuDNN's) fast convolution layout, several times faster on CPU.
    model = model.to(device, memory_format=torch.channels_last).eval()
    out = []
    for start in tqdm(range(0, len(ids), batch_size), desc=desc, unit="batch", file=sys.stderr, leave=False):
        batch_ids = np.sort(ids[start : start + batch_size])  # sorted reads are cheaper on a memmap
        order = np.argsort(np.argsort(ids[start : start + batch_size]))
        x = normalize(
            torch.from_numpy(np.ascontiguousarray(images[batch_ids])[order]).to(device, non_blocking=True), mean, std
        )
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            logits = model(x.contiguous(memory_format=torch.channels_last))
        out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def score_role(pred: RolePredictions, bins: int, top_k: int = 10) -> tuple[dict[str, Any], dict[str, Any]]:
    """(scalars for the metrics JSON, the fuller record for the details JSON)."""
    y, p = pred.labels, pred.predicted
    classes = pred.classes
    num_classes = len(classes)
    large = num_classes > confusion.LARGE_LABEL_SET
    confidence = pred.confidence
    correct = int((y == p).sum())
    n = int(y.size)
    low, high = metrics.wilson_interval(correct, n)
    scalars = {
        "accuracy": metrics.accuracy(y, p),
        "macro_f1": metrics.macro_f1(y, p, num_classes),
        "loss": metrics.cross_entropy_from_logits(y, pred.logits),
        "ece": metrics.expected_calibration_error(confidence, y == p, bins),
        "n": n,
        "accuracy_ci_low": low,
        "accuracy_ci_high": high,
    }
    summary = confusion.summary(y, p, pred.logits, classes.characters)
    if large:
        scalars["top5_accuracy"] = summary["top5_accuracy"]
    supports, hits_of, _ = metrics.class_counts(y, p, num_classes)
    per_class_acc = metrics.per_class_accuracy(y, p, num_classes)
    per_class_f1 = metrics.per_class_f1(y, p, num_classes)
    per_class = {}
    for label, character in enumerate(classes.characters):
        support = int(supports[label])
        hits = int(hits_of[label])
        c_low, c_high = metrics.wilson_interval(hits, support)
        per_class[character] = {
            "label": label,
            "value": classes.values[label],
            "n": support,
            "correct": hits,
            "accuracy": _finite(per_class_acc[label]),
            "accuracy_ci_low": _finite(c_low),
            "accuracy_ci_high": _finite(c_high),
            "f1": _finite(per_class_f1[label]),
        }
    details = {
        **scalars,
        "correct": correct,
        "accuracy_ci": {"low": low, "high": high, "level": 0.95, "method": "wilson"},
        "writers": sorted(int(w) for w in np.unique(pred.writers)),
        "per_class": per_class,
        # Rows true, columns predicted; left out (null) for large label sets: see confusion_summary.
        "confusion_matrix": None if large else metrics.confusion_matrix(y, p, num_classes).tolist(),
        "top_confusions": [
            {
                "true": t,
                "predicted": q,
                "true_character": classes.characters[t],
                "predicted_character": classes.characters[q],
                "count": count,
            }
            for t, q, count in metrics.confused_pairs(y, p, top_k, num_classes)
        ],
        "confusion_summary": summary,
        "calibration": {"bins": bins, "table": metrics.calibration_table(confidence, y == p, bins)},
    }
    return scalars, details


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined value (class without samples) becomes null."""
    value = float(value)
    return None if math.isnan(value) else value


def predictions_frame(role: str, pred: RolePredictions) -> pd.DataFrame:
    predicted = pred.predicted
    chars = np.array(pred.classes.characters)
    return pd.DataFrame(
        {
            "id": pred.ids,
            "writer": pred.writers,
            "role": role,
            "true": pred.labels,
            "predicted": predicted,
            "confidence": pred.confidence.round(6),
            "true_character": chars[pred.labels],
            "predicted_character": chars[predicted],
        }
    )


def evaluate_run(
    model: torch.nn.Module,
    meta: dict[str, Any],
    images: np.ndarray,
    index: pd.DataFrame,
    split: pd.DataFrame,
    *,
    batch_size: int = 256,
    bins: int = 15,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
) -> dict[str, tuple[dict, dict, RolePredictions]]:
    """Score every role present among val/test: role -> (scalars, details, predictions)."""
    mean, std = check_stats(meta["normalize"]["mean"], meta["normalize"]["std"], "checkpoint")
    results = {}
    for role in ROLES:
        rows = split[split["role"] == role].sort_values("id")
        if rows.empty:
            continue
        ids = rows["id"].to_numpy(dtype=np.int64)
        logits = predict(
            model, images, ids, mean, std, batch_size, device, desc=f"evaluate {role}", amp_dtype=amp_dtype
        )
        pred = RolePredictions(
            ids=ids,
            writers=index["writer"].to_numpy()[ids],
            labels=index["label"].to_numpy(dtype=np.int64)[ids],
            logits=logits,
            classes=Classes.from_meta(meta, "checkpoint"),
        )
        scalars, details = score_role(pred, bins)
        results[role] = (scalars, details, pred)
    return results


def build_outputs(
    results: dict[str, tuple[dict, dict, RolePredictions]],
    *,
    model_name: str,
    size: str,
    protocol: str,
    meta: dict[str, Any],
    summary: dict[str, Any],
    parameters: int,
    precision: str = "float32",
) -> tuple[dict, dict, pd.DataFrame]:
    """Assemble the metrics JSON, the details JSON and the predictions table."""
    start = meta.get("start") or summary.get("start")
    source = meta.get("start_source") or summary.get("start_source") or ""
    head = {
        "model": model_name,
        "size": size,
        "protocol": protocol,
        "start": start,
        "start_source": source,
        "parameters": int(parameters),
    }
    metrics_json: dict[str, Any] = dict(head)
    for role, (scalars, _, _) in results.items():
        metrics_json[role] = scalars
    metrics_json["train"] = {
        key: summary.get(key) for key in ("seconds_total", "images_per_second", "epochs", "best_epoch")
    }
    details_json: dict[str, Any] = {
        **head,
        **Classes.from_meta(meta, "checkpoint").to_meta(),
        "checkpoint_epoch": meta.get("epoch"),
        "input_size": meta.get("input_size"),
        "device": summary.get("device"),
        "evaluation_precision": precision,
    }
    for role, (_, details, _) in results.items():
        details_json[role] = details
    predictions = pd.concat(
        [predictions_frame(role, pred) for role, (_, _, pred) in results.items()], ignore_index=True
    )
    return metrics_json, details_json, predictions[PREDICTION_COLUMNS]


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hccr evaluate", description="Score a trained run on val (and test) rows.")
    p.add_argument("--checkpoint", required=True, help="models/runs/M/Z/checkpoint.pt")
    p.add_argument("--train-summary", required=True, help="models/runs/M/Z/train.json")
    p.add_argument(
        "--images",
        required=True,
        nargs="+",
        help="data/processed/images_S.npy at the checkpoint's input size; for an ensemble, one array per "
        "member's framing, in member order",
    )
    p.add_argument("--index", required=True, help="data/interim/index.csv")
    p.add_argument("--split", required=True, help="data/processed/splits/SCHEME/Z.csv")
    p.add_argument("--protocol", required=True, choices=PROTOCOLS)
    p.add_argument("--model", required=True)
    p.add_argument("--size", required=True)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--bins", type=int, default=15, help="equal-width confidence bins for the ECE")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto: as the run trained (train.json's precision), where the device has native bf16",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (Snakemake passes the job's cores)")
    p.add_argument("--out-metrics", required=True)
    p.add_argument("--out-details", required=True)
    p.add_argument("--out-predictions", required=True)
    return p


def run(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise HccrError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.bins < 1:
        raise HccrError(f"--bins must be >= 1, got {args.bins}")
    if args.threads is not None:
        if args.threads < 1:
            raise HccrError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.exists():
        raise DataError(f"{checkpoint}: checkpoint not found")
    summary = read_train_summary(args.train_summary)
    index = hccr_index.read_index(args.index)
    split = read_split(args.split, len(index), required=("val",))
    if args.protocol != "paper" and not (split["role"] == "test").any():
        raise DataError(f"{args.split}: protocol {args.protocol} needs test rows (held-out writers), found none")

    from hccr.models.checkpoint import load_model  # imported late: only this path needs the model registry

    model, meta = load_model(checkpoint, map_location="cpu")
    check_classes(index, args.index, Classes.from_meta(meta, str(checkpoint)))
    images = framed_inputs(args.images, meta, len(index), str(checkpoint))

    device = pick_device(args.device)
    amp_dtype = pick_precision(args.precision, summary, device)
    results = evaluate_run(
        model,
        meta,
        images,
        index,
        split,
        batch_size=args.batch_size,
        bins=args.bins,
        device=device,
        amp_dtype=amp_dtype,
    )
    parameters = summary_parameters(summary)
    if parameters is None:
        parameters = sum(p.numel() for p in model.parameters())
    metrics_json, details_json, predictions = build_outputs(
        results,
        model_name=args.model,
        size=args.size,
        protocol=args.protocol,
        meta=meta,
        summary=summary,
        parameters=parameters,
        precision="bfloat16-autocast" if amp_dtype is not None else "float32",
    )
    # Predictions and details first: the metrics file is what Snakemake/DVC watch last.
    write_csv(args.out_predictions, predictions)
    write_json(args.out_details, details_json)
    write_json(args.out_metrics, metrics_json)
    val = metrics_json["val"]
    line = f"{args.model}/{args.size}: val accuracy {val['accuracy']:.4f} (n={val['n']})"
    if "test" in metrics_json:
        line += f", test accuracy {metrics_json['test']['accuracy']:.4f} (n={metrics_json['test']['n']})"
    print(line, file=sys.stderr)


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
