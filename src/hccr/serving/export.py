"""Export the best trained run: checkpoint, ONNX model with its metadata, parity check, model card.

    python -m hccr.serving.export --metrics reports/metrics/*/*.json --models-dir models \
        --select val_accuracy --images data/processed/images_64.npy data/processed/images_299.npy \
        --index data/interim/index.csv --split-dir data/processed/splits \
        --evaluation-dir reports/evaluation --resize-filter bilinear \
        --tolerance 1e-4 --max-images 512 --out-dir models/export

1. Selection: the run with the best `--select` value among the metrics files
   (`val_accuracy`, `test_accuracy`: higher is better; `val_loss`: lower is better; ties go
   to the first file in sorted order). Files without that metric are skipped, with a note.
2. `out-dir/checkpoint.pt`: the run's `models/runs/{model}/{size}/checkpoint.pt`, copied byte for
   byte after it loaded with `weights_only=True`.
3. `out-dir/model.onnx`: the model followed by a softmax (output `probabilities`, input
   `image` (B, 1, S, S) float32, dynamic batch), exported with torch's default exporter
   (`dynamo=True`), falling back to the TorchScript exporter (`dynamo=False`) if that fails.
   What a user needs to prepare inputs travels inside the file, as ONNX `metadata_props`
   (keys `hccr.*`, read back by `metadata_from_props`): input size, mean, std,
   characters, values, resize filter, model name, start, epoch.
4. Parity: onnxruntime and PyTorch score up to `--max-images` of the run's test images (its
   validation images when the split has no test role), spread evenly over the ids. Every
   image must get the same top-1 class and max |p_onnx - p_torch| <= `--tolerance`;
   `out-dir/parity.json` holds the figures. Otherwise HccrError, and nothing is written.
5. `out-dir/model_card.md` (hccr.reporting.model_card).

`--ensemble RUN RUN...` (params `export.ensemble`, runs as `model/size`): the exported model
is those runs' softmax averaged (hccr.models.ensemble), each member reading the file framed
as it was trained (model block `framing`). `checkpoint.pt` is then a new format-1 checkpoint
of model `ensemble` holding every member, `model.onnx` takes one input channel per member
(metadata `hccr.framings`), and the exported model is scored on every validation and test
image of the members' split (`parity.json`: `val_accuracy`, `test_accuracy`, `members`).
The selection is still made and shown in the model card, beside the members.

Everything is built in a temporary folder that replaces `out-dir` only when all steps passed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from hccr.atomic import atomic_dir, write_json, write_text
from hccr.data.arrays import StackedArrays, load_images
from hccr.data.index import read_index
from hccr.data.splits import read_split
from hccr.errors import ConfigError, DataError, HccrError, reports_errors
from hccr.evaluation.metrics import wilson_interval
from hccr.files import read_json_object
from hccr.normalization import check_stats
from hccr.serving.onnx_meta import INPUT_NAME, OUTPUT_NAME, metadata_props
from hccr.serving.preprocess import FRAMINGS

# metric name -> (role, key, higher is better)
SELECTORS = {
    "val_accuracy": ("val", "accuracy", True),
    "test_accuracy": ("test", "accuracy", True),
    "val_loss": ("val", "loss", False),
}


# ----------------------------------------------------------------------------- selection


@dataclass
class Candidate:
    metrics_path: Path
    metrics: dict
    model: str
    size: str
    value: float


def read_metrics(path: Path) -> dict:
    return read_json_object(path, "metrics file")


def select_run(metrics_paths: list[Path], select: str, log=None) -> tuple[Candidate, list[Candidate]]:
    """The best run by `select`, and every run that had the metric (in file order)."""
    log = log or sys.stderr
    if select not in SELECTORS:
        raise ConfigError(f"export.select: {select!r} is not one of {', '.join(SELECTORS)}")
    if not metrics_paths:
        raise DataError("no metrics files given (--metrics)")
    role, key, higher = SELECTORS[select]
    candidates = []
    for path in sorted(Path(p) for p in metrics_paths):
        data = read_metrics(path)
        value = (data.get(role) or {}).get(key) if isinstance(data.get(role), dict) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            print(f"note: {path}: no finite {role}.{key}; not a candidate for export.select={select}", file=log)
            continue
        # metrics/{model}/{size}.json: the JSON's own fields win, the path is the fallback.
        model = str(data.get("model") or path.parent.name)
        size = str(data.get("size") or path.stem)
        candidates.append(Candidate(path, data, model, size, float(value)))
    if not candidates:
        raise DataError(f"none of the {len(metrics_paths)} metrics files has {role}.{key} (export.select={select})")
    best = candidates[0]
    for candidate in candidates[1:]:
        if (candidate.value > best.value) if higher else (candidate.value < best.value):
            best = candidate
    return best, candidates


# ----------------------------------------------------------------------------- export


def probability_model(model):
    """The model with a softmax on top, so the ONNX file outputs probabilities."""
    import torch

    class WithSoftmax(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            return torch.softmax(self.inner(image), dim=1)

    return WithSoftmax(model).eval()


def export_onnx(model, input_size: int, meta: Mapping[str, Any], resize_filter: str, out: Path) -> str:
    """Write the model (plus softmax) as ONNX with its metadata; return the exporter used."""
    import onnx
    import torch

    from hccr.models.ensemble import member_framings

    wrapped = probability_model(model.eval())
    example = (torch.zeros(2, len(member_framings(meta)), input_size, input_size),)
    common = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    exporter = "dynamo"
    # The exporter reports progress on stdout; keep stdout for results and send it to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            torch.onnx.export(
                wrapped,
                example,
                str(out),
                dynamo=True,
                external_data=False,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                **common,
            )
        except Exception as exc:  # the new exporter still fails on some graphs: use the old one
            print(f"note: dynamo ONNX export failed ({type(exc).__name__}: {exc}); using dynamo=False")
            exporter = "torchscript"
            torch.onnx.export(
                wrapped,
                example,
                str(out),
                dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                **common,
            )
    proto = onnx.load(str(out))
    del proto.metadata_props[:]
    for key, value in metadata_props(meta, resize_filter).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return exporter


# ----------------------------------------------------------------------------- parity


def parity_ids(split: pd.DataFrame, max_images: int) -> tuple[str, np.ndarray]:
    """The role checked (test, else val) and up to `max_images` of its ids, evenly spread."""
    for role in ("test", "val"):
        ids = np.sort(split.loc[split["role"] == role, "id"].to_numpy(dtype=np.int64))
        if ids.size:
            if ids.size > max_images:
                ids = ids[np.unique(np.linspace(0, ids.size - 1, max_images).round().astype(np.int64))]
            return role, ids
    raise DataError("split has neither test nor val rows to check parity on")


def check_parity(
    model,
    onnx_path: Path,
    glyphs: np.ndarray,
    mean: float,
    std: float,
    tolerance: float,
    labels: np.ndarray | None = None,
    batch_size: int = 128,
) -> dict[str, Any]:
    """Score uint8 (N, S, S) images (an ensemble's (N, M, S, S)) with PyTorch and onnxruntime;
    the figures, with `passed`."""
    import onnxruntime
    import torch

    from hccr.normalization import normalize

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    wrapped = probability_model(model.eval())
    torch_probs, onnx_probs = [], []
    for start in tqdm(range(0, len(glyphs), batch_size), desc="parity", unit="batch", file=sys.stderr):
        batch = normalize(glyphs[start : start + batch_size], mean, std)
        with torch.inference_mode():
            torch_probs.append(wrapped(batch).numpy())
        onnx_probs.append(session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})[0])
    p_torch, p_onnx = np.concatenate(torch_probs), np.concatenate(onnx_probs)
    diff = np.abs(p_onnx.astype(np.float64) - p_torch.astype(np.float64))
    top_torch, top_onnx = p_torch.argmax(1), p_onnx.argmax(1)
    agree = int((top_torch == top_onnx).sum())
    figures = {
        "n_images": int(len(glyphs)),
        "tolerance": float(tolerance),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "top1_agree": agree,
        "top1_disagree": int(len(glyphs) - agree),
        "batch_sizes_checked": sorted({len(p) for p in torch_probs}),
    }
    if labels is not None:
        figures["torch_accuracy"] = float((top_torch == labels).mean())
        figures["onnx_accuracy"] = float((top_onnx == labels).mean())
    figures["passed"] = bool(agree == len(glyphs) and figures["max_abs_diff"] <= tolerance)
    return figures


# ----------------------------------------------------------------------------- inputs


def find_images(paths: list[Path], input_size: int, framing: str = "cell") -> Path:
    """The images .npy at `input_size` framed by `framing`: `images_{S}.npy` by name (in an
    `{framing}/` folder unless the framing is `cell`), else, for `cell`, by array shape."""
    for path in paths:
        folder_ok = path.parent.name == framing if framing != "cell" else path.parent.name not in FRAMINGS
        if path.name == f"images_{input_size}.npy" and folder_ok:
            return path
    if framing != "cell":
        raise DataError(
            f"no --images array at size {input_size} framed by {framing} ({framing}/images_{input_size}.npy; "
            f"given: {', '.join(map(str, paths)) or 'none'})"
        )
    for path in paths:
        try:
            shape = load_images(path).shape
        except DataError:
            continue
        if len(shape) == 3 and shape[1:] == (input_size, input_size):
            return path
    raise DataError(f"no --images array at size {input_size} (given: {', '.join(map(str, paths)) or 'none'})")


def split_counts(split: pd.DataFrame, index: pd.DataFrame | None) -> dict[str, dict[str, int]]:
    """Images and writers per role."""
    counts = {}
    for role in ("train", "val", "test"):
        ids = split.loc[split["role"] == role, "id"].to_numpy(dtype=np.int64)
        if ids.size:
            entry = {"images": int(ids.size)}
            if index is not None and "writer" in index.columns:
                entry["writers"] = int(np.unique(index["writer"].to_numpy()[ids]).size)
            counts[role] = entry
    return counts


# ----------------------------------------------------------------------------- members


@dataclass
class Member:
    """One run the export reads: its checkpoint, loaded model and metadata, split and metrics."""

    model_name: str
    size: str
    run_dir: Path
    checkpoint: Path
    model: Any
    meta: dict
    split_path: Path
    metrics: dict

    @property
    def framing(self) -> str:
        return str((self.meta.get("config") or {}).get("framing", "cell"))

    def summary(self) -> dict[str, Any]:
        val, test = self.metrics.get("val") or {}, self.metrics.get("test") or {}
        return {
            "run": f"{self.model_name}/{self.size}",
            "framing": self.framing,
            "arch": (self.meta.get("config") or {}).get("arch"),
            "val_accuracy": val.get("accuracy") if isinstance(val, dict) else None,
            "test_accuracy": test.get("accuracy") if isinstance(test, dict) else None,
        }


def parse_run(text: str) -> tuple[str, str]:
    model, _, size = str(text).partition("/")
    if not model or not size or "/" in size:
        raise ConfigError(f"export.ensemble: {text!r} is not a run (model/size)")
    return model, size


def load_member(models_dir: Path, model_name: str, size: str, args: argparse.Namespace) -> Member:
    from hccr.models.checkpoint import load_model

    run_dir = models_dir / model_name / size
    checkpoint = run_dir / "checkpoint.pt"
    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: checkpoint of run {model_name}/{size} not found")
    model, meta = load_model(checkpoint, map_location="cpu")
    scheme = (meta.get("config") or {}).get("scheme")
    if args.split:
        split_path = Path(args.split)
    elif scheme:
        split_path = Path(args.split_dir) / str(scheme) / f"{size}.csv"
    else:
        raise DataError(f"{checkpoint}: config has no `scheme`; pass --split")
    # reports/metrics/{model}/{size}.json: the member's own figures, for the model card
    named = [Path(p) for p in args.metrics if Path(p).parent.name == model_name and Path(p).stem == size]
    metrics = read_metrics(named[0]) if named else {}
    return Member(model_name, size, run_dir, checkpoint, model, meta, split_path, metrics)


def check_members(members: list[Member]) -> None:
    """An ensemble's runs must score the same validation and test images (hccr.models.ensemble
    checks the rest: one input size, the same classes)."""
    first = members[0]
    for member in members[1:]:
        if member.split_path != first.split_path and not _same_roles(member.split_path, first.split_path):
            raise DataError(
                f"export.ensemble: {member.split_path} and {first.split_path} hold different validation or test images"
            )


def _same_roles(a: Path, b: Path) -> bool:
    frames = [pd.read_csv(path) for path in (a, b)]
    return all(
        set(frames[0].loc[frames[0]["role"] == role, "id"]) == set(frames[1].loc[frames[1]["role"] == role, "id"])
        for role in ("val", "test")
    )


def save_ensemble(members: list[Member], path: Path, resize_filter: str, val_accuracy: float | None = None):
    """The members as one `ensemble` checkpoint at `path`, loaded back as any checkpoint is."""
    from hccr.models import ensemble
    from hccr.models.checkpoint import load_model

    runs = {f"{member.model_name}/{member.size}": member.checkpoint for member in members}
    ensemble.save_checkpoint(path, runs, resize_filter=resize_filter, val_accuracy=val_accuracy)
    return load_model(path, map_location="cpu")


def score_roles(
    model, inputs: StackedArrays, split: pd.DataFrame, labels: np.ndarray | None, mean: float, std: float
) -> dict:
    """The exported model's accuracy (and image count) on every validation and test image."""
    import torch

    from hccr.normalization import normalize

    if labels is None:
        return {}
    scores = {}
    for role in ("val", "test"):
        ids = np.sort(split.loc[split["role"] == role, "id"].to_numpy(dtype=np.int64))
        if not ids.size:
            continue
        right = 0
        for start in range(0, ids.size, 256):
            chunk = ids[start : start + 256]
            batch = normalize(inputs[chunk], mean, std)
            with torch.inference_mode():
                right += int((model(batch).argmax(1).numpy() == labels[chunk]).sum())
        scores[f"{role}_accuracy"], scores[f"{role}_images"] = right / ids.size, int(ids.size)
    return scores


def ensemble_metrics(first: Mapping[str, Any], scores: Mapping[str, Any]) -> dict[str, Any]:
    """What the model card's results table reads, for the ensemble: accuracy, count and Wilson interval."""
    metrics = {key: first.get(key) for key in ("protocol", "size")}
    for role in ("val", "test"):
        if f"{role}_accuracy" in scores:
            accuracy, n = scores[f"{role}_accuracy"], scores[f"{role}_images"]
            low, high = wilson_interval(round(accuracy * n), n)
            metrics[role] = {"accuracy": accuracy, "n": n, "accuracy_ci_low": low, "accuracy_ci_high": high}
    return metrics


# ----------------------------------------------------------------------------- main


def export_best(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from hccr.reporting.model_card import render_model_card

    best, candidates = select_run([Path(p) for p in args.metrics], args.select)
    runs = [parse_run(run) for run in args.ensemble] if args.ensemble else [(best.model, best.size)]
    members = [load_member(Path(args.models_dir), model, size, args) for model, size in runs]
    first = members[0]
    check_members(members)
    model, meta = first.model, first.meta
    input_size = int(meta["input_size"])
    mean, std = check_stats(meta["normalize"]["mean"], meta["normalize"]["std"], str(first.checkpoint))
    resize_filter = args.resize_filter or meta.get("resize_filter") or "bilinear"

    paths = [Path(p) for p in args.images]
    arrays = [load_images(find_images(paths, input_size, member.framing), size=input_size) for member in members]
    split = read_split(first.split_path, len(arrays[0]))
    index = read_index(args.index) if args.index else None
    role, ids = parity_ids(split, args.max_images)
    all_labels = index["label"].to_numpy(dtype=np.int64) if index is not None and "label" in index else None
    labels = all_labels[ids] if all_labels is not None else None

    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    with atomic_dir(out_dir) as tmp:
        scores = {}
        if len(members) == 1:
            shutil.copy2(first.checkpoint, tmp / "checkpoint.pt")
            parity_inputs = np.asarray(arrays[0][ids])
        else:
            stacked = StackedArrays(arrays)
            model, meta = save_ensemble(members, tmp / "checkpoint.pt", resize_filter)
            scores = score_roles(model, stacked, split, all_labels, mean, std)
            if "val_accuracy" in scores:  # the checkpoint's own field, as a trained run's holds its best
                model, meta = save_ensemble(members, tmp / "checkpoint.pt", resize_filter, scores["val_accuracy"])
            parity_inputs = stacked[ids]
        onnx_path = tmp / "model.onnx"
        exporter = export_onnx(model, input_size, meta, resize_filter, onnx_path)
        for leftover in tmp.glob("model.onnx.*"):  # exporters may leave side files: keep only the model
            leftover.unlink()
        figures = check_parity(model, onnx_path, parity_inputs, mean, std, args.tolerance, labels)
        parity = {
            "model": meta["model"] if len(members) > 1 else best.model,
            "size": first.size,
            "role": role,
            "exporter": exporter,
            **figures,
            **scores,
            "torch_version": torch.__version__,
            "onnxruntime_version": __import__("onnxruntime").__version__,
        }
        if len(members) > 1:
            parity["members"] = [member.summary() for member in members]
        if not figures["passed"]:
            raise HccrError(
                f"{onnx_path.name}: ONNX parity failed on {figures['n_images']} {role} images of "
                f"{best.model}/{best.size}: max |p_onnx - p_torch| = {figures['max_abs_diff']:.3g} "
                f"(tolerance {args.tolerance:g}), top-1 differs on {figures['top1_disagree']}"
            )
        write_json(tmp / "parity.json", parity)
        evaluation_dir = Path(args.evaluation_dir) if args.evaluation_dir else None
        single = len(members) == 1
        card = render_model_card(
            first.meta,
            best.metrics if single else ensemble_metrics(first.metrics, scores),
            parameters=int(sum(p.numel() for p in model.parameters())),
            split_counts=split_counts(split, index),
            details=read_json_object(
                evaluation_dir / first.model_name / first.size / "details.json", "evaluation details", missing_ok=True
            )
            if evaluation_dir and single
            else None,
            train_summary=read_json_object(first.run_dir / "train.json", "train summary", missing_ok=True),
            parity=parity,
            members=None if single else parity["members"],
            selection={
                "metric": args.select,
                "value": best.value,
                "candidates": [{"model": c.model, "size": c.size, "value": c.value} for c in candidates],
            },
            resize_filter=resize_filter,
            total_writers=int(index["writer"].nunique()) if index is not None and "writer" in index else None,
        )
        write_text(tmp / "model_card.md", card)
    return parity


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hccr export", description=__doc__.split("\n\n")[0])
    p.add_argument("--metrics", nargs="+", required=True, help="reports/metrics/{model}/{size}.json files")
    p.add_argument("--models-dir", default="models", help="folder with {model}/{size}/checkpoint.pt (default models)")
    p.add_argument("--select", default="val_accuracy", help=f"params export.select: {' | '.join(SELECTORS)}")
    p.add_argument("--images", nargs="+", required=True, help="data/processed/images_{S}.npy (one per size)")
    p.add_argument("--index", default=None, help="data/interim/index.csv (labels and writers)")
    p.add_argument("--split-dir", default="data/processed/splits", help="folder of {scheme}/{size}.csv")
    p.add_argument("--split", default=None, help="the run's split CSV (default: SPLIT_DIR/{scheme}/{size}.csv)")
    p.add_argument("--evaluation-dir", default=None, help="reports/evaluation (details.json for the model card)")
    p.add_argument("--resize-filter", default=None, help="params resize.filter (default: checkpoint, else bilinear)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="params export.tolerance (max |p_onnx - p_torch|)")
    p.add_argument(
        "--ensemble",
        nargs="*",
        default=[],
        metavar="RUN",
        help="params export.ensemble: model/size runs to average (default: the selected run alone)",
    )
    p.add_argument("--max-images", type=int, default=512, help="images checked for parity (default 512)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    p.add_argument("--out-dir", required=True, help="models/export")
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.tolerance < 0 or not math.isfinite(args.tolerance):
        raise ConfigError(f"export.tolerance: {args.tolerance} must be a non-negative number")
    if args.max_images < 1:
        raise ConfigError("--max-images must be positive")
    if len(args.ensemble) == 1:
        raise ConfigError(f"export.ensemble lists one run ({args.ensemble[0]}); list two or more, or none")
    parity = export_best(args)
    print(
        f"exported {parity['model']}/{parity['size']} to {args.out_dir}: parity on {parity['n_images']} "
        f"{parity['role']} images, max |p_onnx - p_torch| = {parity['max_abs_diff']:.2e}, "
        f"top-1 agrees on {parity['top1_agree']}/{parity['n_images']}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
