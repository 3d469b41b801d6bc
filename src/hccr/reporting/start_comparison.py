"""What a start buys: the same network trained from different starting weights, side by side.

    python -m hccr.reporting.start_comparison --metrics-dir reports/metrics --models-dir models \
        --out reports/figures/starts.png [--out-data reports/figures/starts.csv]

Runs are grouped into *families*: the same registry network on the same backbone at the
same input size (`efficientnet on tf_efficientnet_lite0 at 96 px`), whatever the run's name.
Within a family every start (`scratch`, `imagenet`, later `glyphs`, ...) is one row per size,
so a new start only adds rows. The figure draws test accuracy (or validation accuracy where a
run has no test set) against the number of training images, one line per start, with the 95 %
Wilson interval as error bars; the table says whether ImageNet beats scratch with intervals
that do not overlap. `study_differences` states plainly where a run differs from the study.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import pandas as pd
from matplotlib.figure import Figure

from hccr.atomic import atomic_path, write_csv
from hccr.errors import reports_errors
from hccr.reporting import report_data as rd
from hccr.starts import describe_start, start_kind, start_label, start_order

COLUMNS = [
    "family",
    "network",
    "arch",
    "input_size",
    "model",
    "size",
    "n_train",
    "start",
    "start_source",
    "role",
    "accuracy",
    "ci_low",
    "ci_high",
    "val_accuracy",
    "epochs",
]

# The study's settings per network, for the plain statement of what differs.
STUDY = {
    "efficientnet": {
        "arch": "tf_efficientnetv2_s",
        "input_size": 64,
        "epochs": 20,
        "start": "imagenet",
        "name": "EfficientNetV2-S, 64 px, 10 + 10 epochs (frozen backbone, then all but the first 100 layers)",
    },
    "inception_gru": {
        "arch": "inception_v3",
        "input_size": 299,
        "epochs": 10,
        "start": "imagenet",
        "name": "InceptionV3 + GRU, 299 px, 10 epochs",
    },
}


def network_of(run: rd.Run) -> str:
    config = (run.summary or {}).get("config") or {}
    return str(config.get("network") or run.model)


def family_of(run: rd.Run) -> tuple[str, str, str, int | None]:
    """(label, network, arch, input_size): runs that differ only in their start share it."""
    summary = run.summary or {}
    config = summary.get("config") or {}
    network = network_of(run)
    arch = str(config.get("arch") or "?").partition(".")[0]
    size = summary.get("input_size") or config.get("input_size")
    extra = f", {config['sequence']} sequence" if network == "inception_gru" and config.get("sequence") else ""
    return f"{network} on {arch} at {size} px{extra}", network, arch, size


def comparison_table(runs: list[rd.Run]) -> pd.DataFrame:
    """One row per evaluated run, keyed by family, size and start."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        role = "test" if run.role("test") else "val"
        block = run.role(role)
        if not block or block.get("accuracy") is None:
            continue
        label, network, arch, input_size = family_of(run)
        summary = run.summary or {}
        rows.append(
            {
                "family": label,
                "network": network,
                "arch": arch,
                "input_size": input_size,
                "model": run.model,
                "size": run.size,
                "n_train": summary.get("n_train"),
                "start": run.start,
                "start_source": (run.metrics or {}).get("start_source") or summary.get("start_source") or "",
                "role": role,
                "accuracy": block.get("accuracy"),
                "ci_low": block.get("accuracy_ci_low"),
                "ci_high": block.get("accuracy_ci_high"),
                "val_accuracy": (run.role("val") or {}).get("accuracy"),
                "epochs": summary.get("epochs"),
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    if table.empty:
        return table
    order = table.assign(_size=table["size"].map(rd.size_key), _start=table["start"].map(start_order))
    return order.sort_values(["family", "_size", "_start"]).drop(columns=["_size", "_start"]).reset_index(drop=True)


def versus(table: pd.DataFrame, better: str = "imagenet", baseline: str = "scratch") -> pd.DataFrame:
    """Per family and size: `better` minus `baseline`, and whether their 95 % intervals are disjoint."""
    out = []
    for (family, size), group in table.groupby(["family", "size"], sort=False):
        a = group[group["start"].map(start_kind) == better]
        b = group[group["start"].map(start_kind) == baseline]
        if a.empty or b.empty:
            continue
        a, b = a.iloc[0], b.iloc[0]
        disjoint = bool(a["ci_low"] > b["ci_high"] or b["ci_low"] > a["ci_high"])
        out.append(
            {
                "family": family,
                "size": size,
                better: a["accuracy"],
                baseline: b["accuracy"],
                "difference": a["accuracy"] - b["accuracy"],
                "intervals_disjoint": disjoint,
                "better_wins": bool(a["ci_low"] > b["ci_high"]),
            }
        )
    return pd.DataFrame(
        out, columns=["family", "size", better, baseline, "difference", "intervals_disjoint", "better_wins"]
    )


def figure(table: pd.DataFrame) -> Figure:
    """Accuracy vs training-set size, one panel per family, one line per start, 95 % intervals."""
    families = list(dict.fromkeys(table["family"])) or ["no runs"]
    fig = Figure(figsize=(5.2 * len(families), 4.2), layout="constrained")
    axes = fig.subplots(1, len(families), squeeze=False)[0]
    for ax, family in zip(axes, families, strict=False):
        group = table[table["family"] == family]
        for start in sorted(group["start"].unique(), key=start_order):
            rows = group[group["start"] == start].sort_values("n_train")
            y = rows["accuracy"].to_numpy(float) * 100
            err = [y - rows["ci_low"].to_numpy(float) * 100, rows["ci_high"].to_numpy(float) * 100 - y]
            # One colour per kind of start across panels (scratch C0, ImageNet C1, later kinds after).
            ax.errorbar(
                rows["n_train"].to_numpy(float),
                y,
                yerr=err,
                marker="o",
                capsize=4,
                label=start_label(start),
                color=f"C{start_order(start)[0]}",
            )
        role = "test" if (group["role"] == "test").all() else "validation"
        ax.set(
            title=family.replace(" at ", "\nat "),
            xlabel="training images",
            ylabel=f"{role} accuracy (%), 95 % interval",
        )
        if not group.empty:
            ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy vs training-set size: ImageNet start vs scratch")
    return fig


def head_has_batchnorm(run: rd.Run) -> bool:
    config = (run.summary or {}).get("config") or {}
    return bool((config.get("head") or {}).get("batchnorm", False))


def study_differences(runs: list[rd.Run]) -> list[str]:
    """One plain sentence per family: backbone, input size, epochs and start against the study's."""
    lines = []
    seen = set()
    for run in runs:
        label, network, arch, input_size = family_of(run)
        study = STUDY.get(network)
        if study is None or label in seen:
            continue
        seen.add(label)
        family = [r for r in runs if family_of(r)[0] == label]
        epochs = sorted({int((r.summary or {}).get("epochs") or 0) for r in family})
        starts = sorted({describe_start(r.start, (r.summary or {}).get("start_source")) for r in family})
        diffs = []
        if arch != study["arch"]:
            diffs.append(f"backbone {arch} instead of {study['arch']}")
        if input_size != study["input_size"]:
            diffs.append(f"{input_size} px input instead of {study['input_size']}")
        if epochs and epochs != [study["epochs"]]:
            diffs.append(f"{'/'.join(map(str, epochs))} epochs instead of {study['epochs']}")
        if network == "efficientnet" and any(head_has_batchnorm(r) for r in family):
            diffs.append("a BatchNorm before the head's ReLU (from random weights the study's head dies)")
        diffs.append(
            "writers held out for validation and test (the study shared writers and had no test set)"
            if run.protocol == "writer"
            else "random splits as the study drew them"
        )
        lines.append(
            f"{label} (runs from {', '.join(starts)}): the study ran {study['name']}; here: " + "; ".join(diffs) + "."
        )
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hccr start-comparison", description=__doc__.split("\n\n")[0])
    p.add_argument("--metrics-dir", required=True, help="reports/metrics")
    p.add_argument("--models-dir", required=True, help="models (runs under models/runs/{model}/{size})")
    p.add_argument("--evaluation-dir", default="reports/evaluation")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--out-data", help="CSV beside it (default: the PNG's path with .csv)")
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    runs = rd.discover_runs(Path(args.metrics_dir), Path(args.evaluation_dir), Path(args.models_dir))
    table = comparison_table(runs)
    out = Path(args.out)
    with atomic_path(out) as tmp:
        figure(table).savefig(tmp, format="png", dpi=110)
    write_csv(args.out_data or out.with_suffix(".csv"), table)
    print(f"start comparison: {len(table)} run(s) in {table['family'].nunique()} famil(ies) -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
