"""Writer cross-validation in the report: the spread across folds and the per-writer accuracies.

`python -m hccr.reporting.writer_cv figure --model M --size Z --per-writer models/cv/per_writer.csv
--predictions F0/predictions.csv F1/... --details F0/details.json --images data/processed/images_S.npy
--out reports/figures/writer_cv/M/Z.png` draws the per-writer accuracy distribution (a histogram and
a strip per fold) above misread test images of the hardest writers, and writes the figure's data
(`--out-data`, default beside it as .csv). `section(doc, inp)` is the report's section (hooked in
hccr.reporting.report): mean, std, min-max and the 95 % Student-t interval across folds beside the single-split test
accuracy of the same run, each fold's figures, and the hardest writers. Every number comes from
models/cv/summary.json and models/cv/per_writer.csv (hccr.evaluation.writer_cv).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hccr.atomic import write_csv
from hccr.classes import Classes
from hccr.errors import DataError, reports_errors
from hccr.evaluation.writer_cv import PER_WRITER_COLUMNS, PREDICTION_COLUMNS
from hccr.files import read_json_object, read_table
from hccr.reporting import report_data as rd
from hccr.reporting import report_render as rr
from hccr.reporting.formatting import DASH, integer, pct
from hccr.reporting.plots import fonts, save_figure

TARGET = 0.995  # issue 14: mean test accuracy across writer folds of the exported model's recipe
HARDEST = 4  # writers shown with their misread images
IMAGES_PER_WRITER = 6


def hardest_writers(table: pd.DataFrame, n: int = HARDEST) -> pd.DataFrame:
    """The n writers of lowest accuracy (ties: more images first, then writer id)."""
    return table.sort_values(["accuracy", "n", "writer"], ascending=[True, False, True]).head(n)


def misread_examples(predictions: pd.DataFrame, writers: list[int], per_writer: int) -> pd.DataFrame:
    """Up to `per_writer` misread test images of each writer, the most confident mistakes first."""
    wrong = predictions[(predictions["role"] == "test") & (predictions["true"] != predictions["predicted"])]
    wrong = wrong[wrong["writer"].isin(writers)].sort_values(["confidence", "id"], ascending=[False, True])
    picked = wrong.groupby("writer", sort=False).head(per_writer)
    order = {w: i for i, w in enumerate(writers)}
    return picked.sort_values("writer", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def distribution_figure(
    table: pd.DataFrame,
    examples: pd.DataFrame,
    images: np.ndarray,
    labels: list[str],
    *,
    title: str,
    font: fonts.CjkFont | None,
) -> Figure:
    """Per-writer accuracy (histogram, strip per fold) above the hardest writers' misread images."""
    cols = IMAGES_PER_WRITER
    rows = max(1, examples["writer"].nunique()) if len(examples) else 1
    fig = Figure(figsize=(1.5 * cols + 0.6, 3.2 + 1.7 * rows), dpi=110, layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.2, 1.7 * rows])
    hist_ax, strip_ax = top.subplots(1, 2)
    accuracy = 100 * table["accuracy"].to_numpy()
    hist_ax.hist(accuracy, bins=min(20, max(5, len(accuracy) // 2)), color="tab:blue", edgecolor="white")
    hist_ax.set_xlabel("per-writer test accuracy (%)")
    hist_ax.set_ylabel("writers")
    folds = sorted(table["fold"].unique())
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(table))  # fixed: the figure is reproducible
    strip_ax.scatter(accuracy, table["fold"].to_numpy() + jitter, s=12, alpha=0.7)
    for fold in folds:
        mean = 100 * table.loc[table["fold"] == fold, "correct"].sum() / table.loc[table["fold"] == fold, "n"].sum()
        strip_ax.plot([mean, mean], [fold - 0.35, fold + 0.35], color="black", lw=1)
    strip_ax.set_yticks(folds)
    strip_ax.set_ylabel("fold (bar: fold accuracy)")
    strip_ax.set_xlabel("per-writer test accuracy (%)")
    top.suptitle(title)
    axes = bottom.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    if not len(examples):
        axes[0, 0].text(0, 0.5, "the hardest writers have no misread test images", transform=axes[0, 0].transAxes)
    for r, (writer, group) in enumerate(examples.groupby("writer", sort=False)):
        for c, row in enumerate(group.itertuples(index=False)):
            ax = axes[r, c]
            ax.imshow(images[int(row.id)], cmap="gray", vmin=0, vmax=255)
            ax.set_title(
                f"writer {writer}: {labels[int(row.true)]}→{labels[int(row.predicted)]}",
                fontsize=8,
                fontfamily=fonts.font_family(font),
            )
    bottom.suptitle("misread test images of the hardest writers (true→predicted)", fontsize=10)
    return fig


def cmd_figure(args: argparse.Namespace) -> None:
    table = read_table(args.per_writer, PER_WRITER_COLUMNS, "per-writer table")
    table = table[(table["model"] == args.model) & (table["size"] == args.size)]
    if table.empty:
        raise DataError(f"{args.per_writer}: no rows for {args.model}/{args.size}")
    predictions = pd.concat(
        [read_table(p, [*PREDICTION_COLUMNS, "confidence"], "fold predictions") for p in args.predictions],
        ignore_index=True,
    )
    images = np.load(args.images, mmap_mode="r")
    if len(predictions) and int(predictions["id"].max()) >= images.shape[0]:
        raise DataError(f"{args.images}: {images.shape[0]} images, predictions reference id {predictions['id'].max()}")
    details = read_json_object(args.details, "evaluation details")
    classes = Classes.from_meta(details, str(args.details))
    font = fonts.cjk_font(classes.text, disable=True if args.no_cjk_font else None)
    labels = fonts.class_labels(font, classes)
    hardest = hardest_writers(table)
    examples = misread_examples(predictions, [int(w) for w in hardest["writer"]], IMAGES_PER_WRITER)
    title = f"{args.model}/{args.size}: accuracy per test writer across {table['fold'].nunique()} writer folds"
    save_figure(distribution_figure(table, examples, images, labels, title=title, font=font), args.out)
    write_csv(
        args.out_data or Path(args.out).with_suffix(".csv"),
        table.assign(hardest=table["writer"].isin(hardest["writer"])),
    )


# ----------------------------------------------------------------------------- report section


def _single_split(runs: list[rd.Run], model: str, size: str) -> dict | None:
    for run in runs:
        if run.model == model and run.size == size:
            return run.role("test")
    return None


def section(doc: rr.Document, inp) -> None:
    """The report's writer cross-validation part (nothing unless subsets.protocol is writer_cv)."""
    if (inp.params.get("subsets") or {}).get("protocol") != "writer_cv":
        return
    doc.add(rr.Heading(3, "Writer cross-validation: accuracy for new writers"))
    summary = read_json_object(inp.writer_cv_dir / "summary.json", "writer cross-validation summary", missing_ok=True)
    per_writer_path = inp.writer_cv_dir / "per_writer.csv"
    if not summary or not summary.get("runs") or not per_writer_path.exists():
        doc.add(rr.Para(f"No writer cross-validation results under `{inp.writer_cv_dir}`."))
        return
    per_writer = read_table(per_writer_path, PER_WRITER_COLUMNS, "per-writer table")
    doc.add(
        rr.Para(
            f"The writers are split into {summary['folds']} groups; fold i tests on group i, validates on writers "
            "drawn from the other groups and trains on the rest, so every writer is tested exactly once by a "
            "model that never saw them. The single split is the grid's one `writer` split of the same run."
        )
    )
    rows = []
    for entry in summary["runs"]:
        s = entry["test_accuracy"]
        single = _single_split(inp.runs, entry["model"], entry["size"]) or {}
        rows.append(
            [
                f"{entry['model']}/{entry['size']}",
                pct(single.get("accuracy")),
                integer(s["folds"]),
                pct(s["mean"]),
                pct(s["std"]),
                f"{pct(s['min'])} – {pct(s['max'])}",
                f"{pct(s['ci_low'])} – {pct(s['ci_high'])}",
                pct(entry["pooled_test_accuracy"]),
                integer(entry["writers"]),
                "yes" if s["mean"] >= TARGET else "no",
            ]
        )
    doc.add(
        rr.Table(
            [
                "run",
                "single split",
                "folds",
                "mean",
                "std",
                "min – max",
                "95 % interval of the mean (t)",
                "pooled",
                "writers",
                f"mean ≥ {pct(TARGET)}",
            ],
            rows,
            "Test accuracy across writer folds: std is the sample standard deviation over folds; the interval "
            "is mean ± t(0.975, k−1)·std/√k; pooled counts every test image of every fold once.",
        )
    )
    for entry in summary["runs"]:
        name = f"{entry['model']}/{entry['size']}"
        doc.add(
            rr.Table(
                ["fold", "test writers", "test images", "test acc", "val acc"],
                [
                    [
                        str(f["fold"]),
                        integer(len(f["test_writers"])),
                        integer(f["test_n"]),
                        pct(f["test_accuracy"]),
                        pct(f["val_accuracy"]) if f.get("val_accuracy") is not None else DASH,
                    ]
                    for f in entry["folds"]
                ],
                f"{name}: each fold's test and validation accuracy.",
            )
        )
        table = per_writer[(per_writer["model"] == entry["model"]) & (per_writer["size"] == entry["size"])]
        if table.empty:
            continue
        below = int((table["accuracy"] < TARGET).sum())
        doc.add(
            rr.Para(
                f"{name}: per-writer test accuracy has median {pct(float(table['accuracy'].median()))}; "
                f"{below} of {len(table)} writers are below {pct(TARGET)}. The hardest writers:"
            ),
            rr.Bullets(
                [
                    f"writer {int(r.writer)} (fold {int(r.fold)}): {pct(r.accuracy)} ({int(r.correct)}/{int(r.n)})"
                    for r in hardest_writers(table).itertuples(index=False)
                ]
            ),
        )
        path = rd.find_figure(inp.figures_dir, "writer_cv", entry["model"], entry["size"])
        doc.add(
            rr.Figure(path, f"{name}: per-writer test accuracy across folds, and the hardest writers' misreadings.")
            if path
            else rr.Para(f"No writer cross-validation figure for {name} under `{inp.figures_dir}`.")
        )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hccr writer-cv-plots", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("figure", help="per-writer accuracy and the hardest writers' misread images")
    f.add_argument("--model", required=True)
    f.add_argument("--size", required=True)
    f.add_argument("--per-writer", required=True, help="models/cv/per_writer.csv")
    f.add_argument("--predictions", nargs="+", required=True, help="every fold's predictions.csv")
    f.add_argument("--details", required=True, help="one fold's details.json (the class list)")
    f.add_argument("--images", required=True, help="the run's image array")
    f.add_argument("--no-cjk-font", action="store_true", help="label classes by number")
    f.add_argument("--out", required=True)
    f.add_argument("--out-data", help="the figure's per-writer rows (default: --out with .csv)")
    f.set_defaults(func=cmd_figure)
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
