"""Figures for people (PNG, matplotlib Agg) plus the data behind each one as CSV beside it.

    python -m hccr.reporting.plots curves --history models/runs/M/Z/history.csv --model M --size Z --out F.png
    python -m hccr.reporting.plots sizes --model M --history models/M/small/history.csv ... --out F.png
    python -m hccr.reporting.plots sweep --summary models/sweep/summary.csv --model M --size Z --out F.png [--no-study]
    python -m hccr.reporting.plots confusion --details reports/evaluation/M/Z/details.json --out F.png
    python -m hccr.reporting.plots misclassified --predictions reports/evaluation/M/Z/predictions.csv \
        --images data/processed/images_S.npy --out F.png

Each subcommand also writes `--out-data` (default: the PNG's path with `.csv`).
Figure functions return a matplotlib `Figure` (no pyplot state), so tests can read labels.
Class names are the glyphs when `hccr.reporting.fonts` finds a CJK font, the numeric values otherwise.
Suggested layout (what hccr.reporting.report looks for): reports/figures/curves/{model}/{size}.png,
sizes/{model}.png, sweep/{model}_{size}.png, confusion/{model}/{size}.png,
misclassified/{model}/{size}.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hccr import fonts  # noqa: E402
from hccr.atomic import atomic_path, write_csv  # noqa: E402
from hccr.classes import Classes  # noqa: E402
from hccr.errors import DataError, HccrError, reports_errors  # noqa: E402
from hccr.evaluation.sweep import COLUMNS as SUMMARY_COLUMNS  # noqa: E402
from hccr.files import read_json_object, read_table  # noqa: E402

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
HISTORY_COLUMNS = ("epoch", "phase", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
STUDY_LABEL = "study (phase 2)"


# ----------------------------------------------------------------------------- inputs


def read_history(path: str | Path) -> pd.DataFrame:
    history = read_table(path, HISTORY_COLUMNS, "history")
    if history.empty:
        raise DataError(f"{path}: no epochs recorded")
    return history.sort_values("epoch").reset_index(drop=True)


def reference_history(
    model: str, size: str, reference_dir: str | Path = REFERENCE_DIR
) -> dict[str, list[float]] | None:
    """The study's phase-2 Keras history for model/size, if it ships one."""
    path = Path(reference_dir) / f"{model}_{size}_phase2_history.json"
    if not path.exists():
        return None
    data = read_json_object(path, "study history")
    return {k: list(map(float, v)) for k, v in data.items()}


def phase_starts(history: pd.DataFrame) -> list[tuple[str, float]]:
    """(phase, epoch) where each phase after the first begins."""
    phases = history["phase"].astype(str).tolist()
    epochs = history["epoch"].tolist()
    return [(phases[i], epochs[i]) for i in range(1, len(phases)) if phases[i] != phases[i - 1]]


def align_reference(history: pd.DataFrame, reference: dict[str, list[float]] | None) -> pd.DataFrame | None:
    """The study's phase-2 curves on our epoch axis: its first entry at our first phase-2 epoch.

    None when there is no reference or our run has no second phase (a scratch schedule).
    """
    starts = phase_starts(history)
    if not reference or not starts:
        return None
    first = starts[0][1]
    n = max(len(v) for v in reference.values())
    frame = pd.DataFrame({"epoch": [first + i for i in range(n)]})
    for ours, theirs in (
        ("train_loss", "loss"),
        ("train_accuracy", "accuracy"),
        ("val_loss", "val_loss"),
        ("val_accuracy", "val_accuracy"),
    ):
        values = reference.get(theirs, [])
        frame[f"study_{ours}"] = values + [np.nan] * (n - len(values))
    return frame


SWEEP_COLUMNS = ["run", "gpus", "learning_rate", "batch_size", "val_accuracy", "best_epoch", "seconds_total", "start"]


def read_sweep_summary(summary: str | Path) -> pd.DataFrame:
    """models/sweep/summary.csv as hccr.evaluation.sweep writes it (every column checked)."""
    return read_table(summary, SUMMARY_COLUMNS, "sweep summary")


def sweep_cells(table: pd.DataFrame, model: str, size: str) -> pd.DataFrame:
    """The cells of `model`/`size` in a loaded sweep summary, as the sweep figure shows them."""
    table = table[(table["model"].astype(str) == model) & (table["size"].astype(str) == size)]
    # The figure shows each cell's best validation accuracy, as Table 2's last column does.
    return table.rename(columns={"val_accuracy": "final_val_accuracy", "best_val_accuracy": "val_accuracy"})[
        SWEEP_COLUMNS
    ].reset_index(drop=True)


def read_sweep(summary: str | Path, model: str, size: str) -> pd.DataFrame:
    """The sweep cells of `model`/`size` from models/sweep/summary.csv (hccr.evaluation.sweep)."""
    return sweep_cells(read_sweep_summary(summary), model, size)


def read_study_table2(path: str | Path = REFERENCE_DIR / "study_table2.csv") -> pd.DataFrame:
    table = pd.read_csv(path)
    table["learning_rate"] = table["learning_rate"].astype(float)
    return table


# ----------------------------------------------------------------------------- figures


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _font_kw(font: fonts.CjkFont | None) -> dict[str, Any]:
    return {"fontfamily": fonts.font_family(font)}


def curves_figure(history: pd.DataFrame, *, title: str, reference: pd.DataFrame | None = None) -> Figure:
    """Accuracy and loss per epoch (train solid, validation solid), phase changes marked."""
    fig = _figure(10, 4)
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=False):
        ax.plot(history["epoch"], history[f"train_{metric}"], "o-", ms=3, label=f"train {metric}")
        ax.plot(history["epoch"], history[f"val_{metric}"], "s-", ms=3, label=f"val {metric}")
        if reference is not None:
            ax.plot(
                reference["epoch"],
                reference[f"study_train_{metric}"],
                "--",
                color="C0",
                alpha=0.7,
                label=f"train {metric}, {STUDY_LABEL}",
            )
            ax.plot(
                reference["epoch"],
                reference[f"study_val_{metric}"],
                "--",
                color="C1",
                alpha=0.7,
                label=f"val {metric}, {STUDY_LABEL}",
            )
        for phase, epoch in phase_starts(history):
            ax.axvline(epoch - 0.5, color="grey", ls=":", lw=1)
            ax.annotate(
                f"phase: {phase}",
                (epoch - 0.5, 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=7,
                color="grey",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def curves_data(history: pd.DataFrame, reference: pd.DataFrame | None) -> pd.DataFrame:
    data = history[list(HISTORY_COLUMNS)].copy()
    if reference is not None:
        data = data.merge(reference, on="epoch", how="outer").sort_values("epoch")
    return data


def sizes_figure(histories: dict[str, pd.DataFrame], *, model: str) -> Figure:
    """Validation accuracy per epoch, one line per training-set size."""
    fig = _figure(7, 4.5)
    ax = fig.subplots()
    for size, history in histories.items():
        ax.plot(history["epoch"], history["val_accuracy"], "o-", ms=3, label=size)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{model}: validation accuracy by training-set size")
    ax.grid(alpha=0.3)
    ax.legend(title="size")
    return fig


def sizes_data(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    frames = [h[["epoch", "phase", "val_accuracy"]].assign(size=size) for size, h in histories.items()]
    return pd.concat(frames, ignore_index=True)[["size", "epoch", "phase", "val_accuracy"]]


def _heatmap(ax, table: pd.DataFrame, value: str, title: str):
    grid = table.pivot_table(index="learning_rate", columns="batch_size", values=value, aggfunc="mean")
    grid = grid.sort_index().sort_index(axis=1)
    image = ax.imshow(grid.to_numpy(dtype=float), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [str(b) for b in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{lr:g}" for lr in grid.index])
    ax.set_xlabel("batch size")
    ax.set_ylabel("learning rate")
    ax.set_title(title, fontsize=9)
    for (i, j), v in np.ndenumerate(grid.to_numpy(dtype=float)):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
    return image


def sweep_figure(ours: pd.DataFrame, study: pd.DataFrame | None = None, *, title: str = "sweep") -> Figure:
    """Val accuracy over learning rate x batch, one panel per GPU count; the study's row below."""
    gpus = sorted(set(ours["gpus"]) | (set(study["gpus"]) if study is not None else set()))
    rows = 2 if study is not None else 1
    fig = _figure(4 * max(1, len(gpus)) + 1, 3.4 * rows + 0.4)
    axes = np.atleast_2d(fig.subplots(rows, max(1, len(gpus)), squeeze=False))
    image = None
    for col, g in enumerate(gpus):
        cells = ours[ours["gpus"] == g]
        if cells.empty:
            axes[0, col].text(0.5, 0.5, "no runs", ha="center", va="center", transform=axes[0, col].transAxes)
            axes[0, col].set_title(f"ours: {g} GPU(s)", fontsize=9)
            axes[0, col].set_axis_off()
        else:
            image = _heatmap(axes[0, col], cells, "val_accuracy", f"ours: {g} GPU(s), val accuracy")
        if study is not None:
            image = _heatmap(
                axes[1, col], study[study["gpus"] == g], "val_accuracy", f"study's Table 2: {g} GPU(s), val accuracy"
            )
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="validation accuracy")
    fig.suptitle(title)
    return fig


def sweep_data(ours: pd.DataFrame, study: pd.DataFrame | None) -> pd.DataFrame:
    columns = ["source", "run", "gpus", "learning_rate", "batch_size", "val_accuracy"]
    frames = [ours.assign(source="ours")[columns]]
    if study is not None:
        frames.append(study.assign(source="study")[columns])
    return pd.concat(frames, ignore_index=True)


def confusion_figure(matrix: np.ndarray, labels: list[str], *, title: str, font: fonts.CjkFont | None) -> Figure:
    """Counts per (true, predicted) cell, rows true."""
    matrix = np.asarray(matrix)
    fig = _figure(7.5, 6.5)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, **_font_kw(font), rotation=0 if font else 90)
    ax.set_yticks(range(len(labels)), labels, **_font_kw(font))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), v in np.ndenumerate(matrix):
        if v:
            ax.text(
                j, i, str(int(v)), ha="center", va="center", fontsize=7, color="white" if v > threshold else "black"
            )
    fig.colorbar(image, ax=ax, shrink=0.8, label="images")
    return fig


def mistakes_figure(mistakes: list[dict], labels: list[str], *, title: str, font: fonts.CjkFont | None) -> Figure:
    """The most frequent mistakes as bars `true→predicted`: a large label set's confusion figure."""
    fig = _figure(7.5, 0.28 * max(len(mistakes), 1) + 1.6)
    ax = fig.subplots()
    names = [f"{labels[m['true']]}→{labels[m['predicted']]}" for m in mistakes]
    ax.barh(range(len(names)), [m["count"] for m in mistakes], color="tab:blue")
    ax.set_yticks(range(len(names)), names, **_font_kw(font))
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.set_title(title)
    if not mistakes:
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center", transform=ax.transAxes)
    return fig


def confusion_data(matrix: np.ndarray, labels: list[str]) -> pd.DataFrame:
    matrix = np.asarray(matrix)
    return pd.DataFrame(
        [
            {
                "true": i,
                "predicted": j,
                "true_label": labels[i],
                "predicted_label": labels[j],
                "count": int(matrix[i, j]),
            }
            for i in range(matrix.shape[0])
            for j in range(matrix.shape[1])
        ]
    )


def select_misclassified(predictions: pd.DataFrame, role: str, limit: int) -> pd.DataFrame:
    """Mistakes of `role`, most confident first, taking one per (true, predicted) pair per round
    so that one frequent confusion does not fill the whole grid."""
    wrong = predictions[(predictions["role"] == role) & (predictions["true"] != predictions["predicted"])]
    wrong = wrong.sort_values(["confidence", "id"], ascending=[False, True])
    round_ = wrong.groupby(["true", "predicted"]).cumcount()
    return (
        wrong.assign(_round=round_)
        .sort_values("_round", kind="stable")
        .drop(columns="_round")
        .head(limit)
        .reset_index(drop=True)
    )


def misclassified_figure(
    rows: pd.DataFrame, images: np.ndarray, labels: list[str], *, title: str, font: fonts.CjkFont | None
) -> Figure:
    """A grid of images titled 'true→predicted' with the model's confidence."""
    n = len(rows)
    cols = min(6, max(1, n))
    grid_rows = max(1, int(np.ceil(n / cols)))
    fig = _figure(1.6 * cols + 0.4, 1.8 * grid_rows + 0.6)
    axes = np.atleast_1d(fig.subplots(grid_rows, cols, squeeze=False).ravel())
    for ax in axes:
        ax.set_axis_off()
    if n == 0:
        axes[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center", transform=axes[0].transAxes)
    for ax, row in zip(axes, rows.itertuples(index=False), strict=False):
        ax.imshow(images[int(row.id)], cmap="gray", vmin=0, vmax=255)
        ax.set_title(
            f"{labels[int(row.true)]}→{labels[int(row.predicted)]}\n{row.confidence:.2f}", fontsize=9, **_font_kw(font)
        )
    fig.suptitle(title, **_font_kw(font))
    return fig


# ----------------------------------------------------------------------------- saving


def save_figure(fig: Figure, out: str | Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")


def _data_path(args: argparse.Namespace) -> Path:
    return Path(args.out_data) if args.out_data else Path(args.out).with_suffix(".csv")


def _font(args: argparse.Namespace, classes: Classes) -> fonts.CjkFont | None:
    return fonts.cjk_font(classes.text, disable=True if args.no_cjk_font else None)


def _read_details(path: Path) -> tuple[dict, Classes]:
    """An evaluation's details.json and the class list it records."""
    if not path.exists():
        raise DataError(f"{path}: details not found")
    details = read_json_object(path, "evaluation details")
    return details, Classes.from_meta(details, str(path))


# ----------------------------------------------------------------------------- subcommands


def cmd_curves(args: argparse.Namespace) -> None:
    history = read_history(args.history)
    reference = (
        None
        if args.no_study
        else align_reference(history, reference_history(args.model, args.size, args.reference_dir))
    )
    fig = curves_figure(history, title=f"{args.model} / {args.size}", reference=reference)
    save_figure(fig, args.out)
    write_csv(_data_path(args), curves_data(history, reference))


def cmd_sizes(args: argparse.Namespace) -> None:
    labels = args.labels or [Path(p).parent.name for p in args.history]
    if len(labels) != len(args.history):
        raise HccrError(f"--labels gives {len(labels)} names for {len(args.history)} histories")
    histories = {label: read_history(path) for label, path in zip(labels, args.history, strict=False)}
    save_figure(sizes_figure(histories, model=args.model), args.out)
    write_csv(_data_path(args), sizes_data(histories))


def cmd_sweep(args: argparse.Namespace) -> None:
    ours = read_sweep(args.summary, args.model, args.size)
    if ours.empty:
        raise DataError(f"{args.summary}: no sweep cells of {args.model}/{args.size}")
    study = None if args.no_study else read_study_table2(args.study_table)
    title = args.title or f"sweep: {args.model} / {args.size}"
    save_figure(sweep_figure(ours, study, title=title), args.out)
    write_csv(_data_path(args), sweep_data(ours, study))


def _pick_role(role: str | None, available: list[str], source: Path) -> str:
    if role:
        if role not in available:
            raise DataError(f"{source}: no {role!r} rows (has {', '.join(available) or 'none'})")
        return role
    for preferred in ("test", "val"):
        if preferred in available:
            return preferred
    raise DataError(f"{source}: neither test nor val results")


def cmd_confusion(args: argparse.Namespace) -> None:
    path = Path(args.details)
    details, classes = _read_details(path)
    role = _pick_role(args.role, [r for r in ("val", "test") if r in details], path)
    if "confusion_matrix" not in details[role]:
        raise DataError(f"{path}: {role} has no confusion_matrix")
    font = _font(args, classes)
    labels = fonts.class_labels(font, classes)
    if details[role]["confusion_matrix"] is None:  # a large label set: its mistakes, not a K x K picture
        mistakes = details[role].get("confusion_summary", {}).get("most_confused")
        if mistakes is None:
            raise DataError(f"{path}: {role} has neither a confusion_matrix nor a confusion_summary")
        title = f"{details.get('model', '')} / {details.get('size', '')}: most frequent mistakes on {role}"
        save_figure(mistakes_figure(mistakes, labels, title=title, font=font), args.out)
        write_csv(_data_path(args), pd.DataFrame(mistakes))
        return
    matrix = np.asarray(details[role]["confusion_matrix"])
    if matrix.shape != (len(labels), len(labels)):
        raise DataError(f"{path}: {role} confusion_matrix is {matrix.shape}, expected {len(labels)}x{len(labels)}")
    title = f"{details.get('model', '')} / {details.get('size', '')}: confusion on {role} (rows true)"
    save_figure(confusion_figure(matrix, labels, title=title, font=font), args.out)
    write_csv(_data_path(args), confusion_data(matrix, labels))


def cmd_misclassified(args: argparse.Namespace) -> None:
    path = Path(args.predictions)
    if not path.exists():
        raise DataError(f"{path}: predictions not found")
    predictions = pd.read_csv(path)
    missing = [c for c in ("id", "role", "true", "predicted", "confidence") if c not in predictions.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    role = _pick_role(args.role, sorted(set(predictions["role"])), path)
    images_path = Path(args.images)
    if not images_path.exists():
        raise DataError(f"{images_path}: image array not found")
    images = np.load(images_path, mmap_mode="r")
    if len(predictions) and predictions["id"].max() >= images.shape[0]:
        raise DataError(
            f"{images_path}: has {images.shape[0]} rows, predictions reference id {predictions['id'].max()}"
        )
    rows = select_misclassified(predictions, role, args.max)
    _, classes = _read_details(Path(args.details))
    font = _font(args, classes)
    labels = fonts.class_labels(font, classes)
    title = args.title or f"misclassified {role} images (true→predicted, confidence; one per confusion per round)"
    save_figure(misclassified_figure(rows, images, labels, title=title, font=font), args.out)
    write_csv(
        _data_path(args),
        rows.assign(
            true_label=[labels[t] for t in rows["true"]], predicted_label=[labels[p] for p in rows["predicted"]]
        ),
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hccr plots", description="Draw the report's figures (PNG + CSV data).")
    sub = p.add_subparsers(dest="command", required=True)

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("--out", required=True, help="PNG to write")
        s.add_argument("--out-data", help="CSV of the plotted data (default: --out with .csv)")
        s.add_argument("--no-cjk-font", action="store_true", help="label classes by value, not glyph")

    s = sub.add_parser("curves", help="accuracy/loss per epoch of one run")
    s.add_argument("--history", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--size", required=True)
    s.add_argument("--reference-dir", default=str(REFERENCE_DIR))
    s.add_argument("--no-study", action="store_true", help="leave out the study's phase-2 curves")
    common(s)
    s.set_defaults(func=cmd_curves)

    s = sub.add_parser("sizes", help="validation accuracy of every size of one model")
    s.add_argument("--model", required=True)
    s.add_argument("--history", required=True, nargs="+", help="models/M/SIZE/history.csv ...")
    s.add_argument("--labels", nargs="+", help="legend names (default: each history's folder name)")
    common(s)
    s.set_defaults(func=cmd_sizes)

    s = sub.add_parser("sweep", help="heat maps of the learning rate x batch x GPUs sweep")
    s.add_argument("--summary", required=True, help="models/sweep/summary.csv (hccr.evaluation.sweep)")
    s.add_argument("--model", required=True)
    s.add_argument("--size", required=True)
    s.add_argument("--study-table", default=str(REFERENCE_DIR / "study_table2.csv"))
    s.add_argument("--no-study", action="store_true", help="leave out the study's Table 2 row")
    s.add_argument("--title")
    common(s)
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser("confusion", help="confusion matrix heat map")
    s.add_argument("--details", required=True, help="reports/evaluation/M/Z/details.json")
    s.add_argument("--role", choices=("val", "test"), help="default: test if present, else val")
    common(s)
    s.set_defaults(func=cmd_confusion)

    s = sub.add_parser("misclassified", help="grid of misclassified images")
    s.add_argument("--predictions", required=True)
    s.add_argument("--details", required=True, help="reports/evaluation/M/Z/details.json (the class list)")
    s.add_argument("--images", required=True, help="data/processed/images_S.npy (any size S)")
    s.add_argument("--role", choices=("val", "test"), help="default: test if present, else val")
    s.add_argument("--max", type=int, default=36)
    s.add_argument("--title")
    common(s)
    s.set_defaults(func=cmd_misclassified)
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
