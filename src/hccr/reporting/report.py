"""Assemble the study report (Markdown + self-contained HTML) from the pipeline's outputs.

    python -m hccr.reporting.report --metrics-dir reports/metrics --evaluation-dir reports/evaluation \
        --runs-dir models/runs --sweep-summary models/sweep/summary.csv --figures-dir reports/figures \
        --benchmarks-dir logs/benchmarks \
        --params-json params.json --out-md reports/report.md --out-html reports/report.html

Sections: 1 data and protocols, 2 Table 1 analogue (+ training curves), 3 Table 2 analogue
(sweep), 4 test-set results, 5 efficiency, 6 provenance, 7 discussion. Every sentence of the
discussion is computed from numbers shown in the report. A missing input makes its section
say so; it never stops the report. Figures are looked up under --figures-dir in the layout
`hccr.reporting.plots` documents (curves/{model}/{size}.png, sizes/{model}.png, sweep/*.png,
confusion/{model}/{size}.png, misclassified/{model}/{size}.png).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hccr import starts
from hccr.atomic import write_text
from hccr.config import json_object_arg
from hccr.errors import reports_errors
from hccr.evaluation.evaluate import summary_parameters
from hccr.reporting import exported, glyph_comparison, writer_cv
from hccr.reporting import report_data as rd
from hccr.reporting import report_render as rr
from hccr.reporting import robustness as robustness_section
from hccr.reporting import start_comparison as sc
from hccr.reporting.formatting import DASH, PROTOCOLS, ci, integer, is_number, num, pct, pp, seconds
from hccr.reporting.plots import REFERENCE_DIR, read_study_table2

TITLE = "hccr: handwritten Chinese character recognition on Chinese MNIST — re-run of the study"
SECTIONS = (
    "1. Data and protocols",
    "2. Table 1: validation accuracy and losses per model and size",
    "3. Table 2: learning rate × batch size × GPUs sweep",
    "4. Test-set results",
    "5. Starting weights: what ImageNet pretraining buys",
    "6. Efficiency",
    "7. Provenance",
    "8. Discussion",
)


def start_label(start: str) -> str:
    return starts.start_label(start)


# ----------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    runs: list[rd.Run]
    sweeps: dict[tuple[str, str], pd.DataFrame]
    benchmarks: pd.DataFrame
    study1: pd.DataFrame
    study2: pd.DataFrame
    params: dict[str, Any]
    params_source: str
    git: tuple[str | None, bool | None]
    figures_dir: Path
    evaluation_dir: Path
    sweep_summary: Path
    generated: str
    runs_dir: Path = Path("models/runs")
    writer_cv_dir: Path = Path("models/cv")  # hccr.evaluation.writer_cv's summary and per-writer table
    export: dict[str, Any] | None = None  # models/export/parity.json (hccr.serving.export): the exported model


def gather(args: argparse.Namespace) -> Inputs:
    params: dict[str, Any] = {}
    if args.params_json:
        params = json_object_arg(args.params_json, "--params-json")
    return Inputs(
        runs=rd.discover_runs(
            Path(args.metrics_dir), Path(args.evaluation_dir), Path(args.runs_dir), params.get("models")
        ),
        sweeps=rd.read_sweeps(Path(args.sweep_summary)),
        benchmarks=rd.read_benchmarks(Path(args.benchmarks_dir)),
        study1=rd.read_study_table1(Path(args.reference_dir) / "study_table1.csv"),
        study2=read_study_table2(Path(args.reference_dir) / "study_table2.csv"),
        params=params,
        params_source="" if not args.params_json or args.params_json.lstrip().startswith("{") else args.params_json,
        git=rd.git_revision(Path(args.repo)) if args.repo else rd.git_revision(),
        figures_dir=Path(args.figures_dir),
        evaluation_dir=Path(args.evaluation_dir),
        sweep_summary=Path(args.sweep_summary),
        generated=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        runs_dir=Path(args.runs_dir),
        writer_cv_dir=Path(args.writer_cv_dir),
        export=exported.read_parity(Path(args.export_dir)),
    )


def best_run(runs: list[rd.Run]) -> tuple[rd.Run | None, str]:
    """The run with the best test accuracy (or val accuracy when no run has a test set)."""
    for role in ("test", "val"):
        scored = [r for r in runs if r.role(role) and is_number(r.role(role).get("accuracy"))]
        if scored:
            return max(scored, key=lambda r: r.role(role)["accuracy"]), role
    return None, ""


# ----------------------------------------------------------------------------- sections


def section_data(doc: rr.Document, inp: Inputs) -> None:
    doc.add(rr.Heading(2, SECTIONS[0]))
    subsets = inp.params.get("subsets", {})
    protocols = sorted({r.protocol for r in inp.runs if r.protocol})
    configured = subsets.get("protocol")
    doc.add(
        rr.Para(
            f"Protocol used by the evaluated runs: **{', '.join(protocols) or 'none evaluated'}**"
            + (f"; params.yaml sets `subsets.protocol: {configured}`." if configured else ".")
        )
    )
    tw, vw = subsets.get("test_writers"), subsets.get("val_writers")
    doc.add(
        rr.Bullets(
            [
                PROTOCOLS["writer"]
                + (
                    f" Here {pct(tw, 0)} of writers form the test set and {pct(vw, 0)} of the remaining writers "
                    "the validation set."
                    if is_number(tw) and is_number(vw)
                    else ""
                ),
                PROTOCOLS["paper"],
            ]
        )
    )
    schemes = subsets.get("schemes", {})
    if schemes:
        items = []
        for name, scheme in schemes.items():
            users = [
                m
                for m, cfg in inp.params.get("model", {}).items()
                if isinstance(cfg, dict) and cfg.get("scheme") == name
            ]
            desc = ", ".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in scheme.items())
            items.append(f"scheme `{name}` (used by {', '.join(users) or 'no model'}): {desc}")
        doc.add(rr.Para("Subset schemes (from params):"), rr.Bullets(items))
    rows = []
    for run in inp.runs:
        writers = rd.count_writers(inp.evaluation_dir, run)
        summary = run.summary or {}
        train_n = summary.get("n_train", summary.get("train_images"))
        scheme = (
            inp.params.get("model", {}).get(run.model, {}).get("scheme")
            if isinstance(inp.params.get("model"), dict)
            else None
        )
        rows.append(
            [
                run.name,
                run.protocol or DASH,
                scheme or DASH,
                integer(train_n),
                integer((run.role("val") or {}).get("n")),
                integer(writers.get("val")),
                integer((run.role("test") or {}).get("n")),
                integer(writers.get("test")),
            ]
        )
    if rows:
        doc.add(
            rr.Table(
                [
                    "run",
                    "protocol",
                    "scheme",
                    "train images",
                    "val images",
                    "val writers",
                    "test images",
                    "test writers",
                ],
                rows,
                "Images and writers per role (from the evaluation outputs).",
            )
        )
    else:
        doc.add(rr.Para("No evaluated or trained runs were found, so there are no counts to show."))


def _study_row(study: pd.DataFrame, model: str, size: str) -> pd.Series | None:
    rows = study[(study["model"] == model) & (study["size"] == size)]
    return rows.iloc[0] if len(rows) else None


def section_table1(doc: rr.Document, inp: Inputs) -> None:
    doc.add(rr.Heading(2, SECTIONS[1]))
    if not inp.runs:
        doc.add(rr.Para("No runs found: Table 1 cannot be filled."))
    else:
        rows = []
        for run in inp.runs:
            summary = run.summary or {}
            best = run.history_row(summary.get("best_epoch"))
            val = run.role("val") or {}
            study = _study_row(inp.study1, run.model, run.size)
            rows.append(
                [
                    run.model,
                    run.size,
                    start_label(run.start),
                    integer(summary.get("best_epoch")),
                    num(None if best is None else best["train_loss"]),
                    pct(None if best is None else best["train_accuracy"]),
                    num(val.get("loss")),
                    pct(val.get("accuracy", summary.get("best_val_accuracy"))),
                    num(None if study is None else study["train_loss"]),
                    num(None if study is None else study["val_loss"]),
                    pct(None if study is None else study["val_accuracy"]),
                ]
            )
        doc.add(
            rr.Table(
                [
                    "model",
                    "size",
                    "start",
                    "best epoch",
                    "train loss",
                    "train acc",
                    "val loss",
                    "val acc",
                    "study's train loss",
                    "study's val loss",
                    "study's val acc",
                ],
                rows,
                "Ours: train loss/accuracy from the history at the best epoch; val loss/accuracy of the saved (best) "
                'checkpoint as scored by hccr.evaluation.evaluate. Columns marked "study\'s" are the published numbers '
                "(Table 1 and section 4.1 of the study; random validation split, writers shared with training).",
            )
        )
    missing_study = inp.study1[
        [
            not any(r.model == m and r.size == s for r in inp.runs)
            for m, s in zip(inp.study1["model"], inp.study1["size"], strict=False)
        ]
    ]
    if len(missing_study):
        doc.add(
            rr.Para(
                "Study rows without a run of ours: "
                + ", ".join(
                    f"{m}/{s} (study's val acc {pct(a)})"
                    for m, s, a in zip(
                        missing_study["model"], missing_study["size"], missing_study["val_accuracy"], strict=True
                    )
                )
                + "."
            )
        )
    doc.add(rr.Heading(3, "Training curves"))
    any_figure = False
    for run in inp.runs:
        path = rd.find_figure(inp.figures_dir, "curves", run.model, run.size)
        if path:
            any_figure = True
            doc.add(
                rr.Figure(
                    path,
                    f"Training curves of {run.name} ({start_label(run.start)}): accuracy and loss per epoch, "
                    "phase changes dotted; dashed lines are the study's phase-2 curves where published.",
                )
            )
    models = list(dict.fromkeys(r.model for r in inp.runs))
    for model in models:
        path = rd.find_figure(inp.figures_dir, "sizes", model)
        if path:
            any_figure = True
            doc.add(rr.Figure(path, f"{model}: validation accuracy per epoch for every training-set size."))
    if not any_figure:
        doc.add(rr.Para(f"No curve figures found under `{inp.figures_dir}`."))


def section_table2(doc: rr.Document, inp: Inputs) -> None:
    doc.add(rr.Heading(2, SECTIONS[2]))
    study = inp.study2
    sweep_cfg = inp.params.get("sweep", {})
    if sweep_cfg:
        doc.add(
            rr.Para(
                f"Configured sweep: model `{sweep_cfg.get('model')}`, size `{sweep_cfg.get('size')}`, GPUs "
                f"{sweep_cfg.get('gpus')}, "
                f"learning rates {sweep_cfg.get('learning_rate')}, batch sizes {sweep_cfg.get('batch_size')}"
                + ("" if sweep_cfg.get("enabled", True) else " (disabled)")
                + "."
            )
        )
    if not inp.sweeps:
        doc.add(rr.Para(f"No sweep runs were found in `{inp.sweep_summary}`; only the study's Table 2 is shown."))
    for (model, size), table in inp.sweeps.items():
        # The study swept InceptionV3+GRU on its small subset; only that cell grid is comparable.
        comparable = model == "inception_gru" and size == "small"
        if comparable:
            merged = table.merge(
                study, on=["gpus", "learning_rate", "batch_size"], how="outer", suffixes=("", "_study")
            )
        else:
            merged = table.assign(val_accuracy_study=None, train_loss=None, val_loss=None)
        merged = merged.sort_values(["gpus", "learning_rate", "batch_size"])
        rows = [
            [
                integer(r["gpus"]),
                f"{r['learning_rate']:g}",
                integer(r["batch_size"]),
                pct(r.get("val_accuracy")),
                num(r.get("final_train_loss")),
                num(r.get("final_val_loss")),
                num(r.get("train_loss")),
                num(r.get("val_loss")),
                pct(r.get("val_accuracy_study")),
            ]
            for _, r in merged.iterrows()
        ]
        doc.add(
            rr.Table(
                [
                    "GPUs",
                    "learning rate",
                    "batch",
                    "val acc (best epoch)",
                    "final train loss",
                    "final val loss",
                    "study's train loss",
                    "study's val loss",
                    "study's val acc",
                ],
                rows,
                f"Sweep of {model}/{size}. Ours: best-epoch validation accuracy (train.json) and final-epoch "
                "losses (history.csv)."
                + (
                    " Study's columns: its Table 2 (InceptionV3+GRU, small subset), as printed."
                    if comparable
                    else " The study swept inception_gru/small only, so no study numbers sit beside this grid."
                ),
            )
        )
    doc.add(
        rr.Table(
            ["run", "GPUs", "learning rate", "batch", "train loss", "train acc", "val loss", "val acc"],
            [
                [
                    r["run"],
                    integer(r["gpus"]),
                    f"{r['learning_rate']:g}",
                    integer(r["batch_size"]),
                    num(r["train_loss"]),
                    pct(r["train_accuracy"]),
                    num(r["val_loss"]),
                    pct(r["val_accuracy"]),
                ]
                for _, r in study.iterrows()
            ],
            "The study's Table 2 as published (InceptionV3+GRU, small subset).",
        )
    )
    figures = rd.sweep_figures(inp.figures_dir)
    for path in figures:
        doc.add(
            rr.Figure(
                path,
                "Sweep heat map: validation accuracy over learning rate × batch size, one panel per GPU count "
                "(top: ours; bottom, where drawn: the study's Table 2).",
            )
        )
    if inp.sweeps and not figures:
        doc.add(rr.Para(f"No sweep figure found under `{inp.figures_dir}`."))


def section_test(doc: rr.Document, inp: Inputs) -> None:
    doc.add(rr.Heading(2, SECTIONS[3]))
    with_test = [r for r in inp.runs if r.role("test")]
    without = [r for r in inp.runs if r.metrics and not r.role("test")]
    if without:
        paper = [r.name for r in without if r.protocol == "paper"]
        doc.add(
            rr.Note(
                (
                    f"Protocol `paper` for {', '.join(paper)}: there is **no test set** (random splits, writers "
                    "shared between "
                    "training and validation, as in the study); only validation numbers exist for these runs. "
                    if paper
                    else ""
                )
                + (
                    f"Runs without test results: {', '.join(r.name for r in without if r.protocol != 'paper')}."
                    if any(r.protocol != "paper" for r in without)
                    else ""
                )
            )
        )
    if with_test:
        rows = []
        for run in with_test:
            test, val = run.role("test"), run.role("val") or {}
            gap = (
                val.get("accuracy") - test.get("accuracy")
                if is_number(val.get("accuracy")) and is_number(test.get("accuracy"))
                else None
            )
            rows.append(
                [
                    run.model,
                    run.size,
                    start_label(run.start),
                    pct(test.get("accuracy")),
                    ci(test),
                    num(test.get("macro_f1")),
                    num(test.get("loss")),
                    num(test.get("ece")),
                    integer(test.get("n")),
                    pct(val.get("accuracy")),
                    pp(gap),
                ]
            )
        doc.add(
            rr.Table(
                [
                    "model",
                    "size",
                    "start",
                    "test acc",
                    "95 % CI (Wilson)",
                    "macro-F1",
                    "test loss",
                    "ECE",
                    "n",
                    "val acc",
                    "val − test",
                ],
                rows,
                "Held-out writers (writer protocol): accuracy with its 95 % Wilson score interval, macro-F1, "
                "cross-entropy, expected calibration error.",
            )
        )
    elif not inp.runs or not without:
        doc.add(rr.Para("No test results were found."))
    best, role = best_run(inp.runs)
    if best is None:
        return
    doc.add(rr.Heading(3, f"Best run: {best.name} (by {role} accuracy)"))
    detail = (best.details or {}).get(role) or {}
    confusions = detail.get("top_confusions", [])[:5]
    if confusions:
        doc.add(
            rr.Para(f"Most frequent confusions of {best.name} on {role} (true → predicted, images):"),
            rr.Bullets([f"{c['true_character']} → {c['predicted_character']}: {c['count']}" for c in confusions]),
        )
    for kind, caption in (
        ("confusion", f"Confusion matrix of {best.name} (rows: true class)."),
        (
            "misclassified",
            f"Misclassified images of {best.name}: the most confident mistake of each confusion first "
            "(true→predicted, confidence).",
        ),
    ):
        path = rd.find_figure(inp.figures_dir, kind, best.model, best.size)
        doc.add(
            rr.Figure(path, caption)
            if path
            else rr.Para(f"No {kind} figure for {best.name} under `{inp.figures_dir}`.")
        )


def headline_accuracy(run) -> tuple[str, float | None]:
    """The run's test accuracy, or its validation accuracy when there is no test set."""
    for role in ("test", "val"):
        value = (run.role(role) or {}).get("accuracy")
        if value is not None:
            return role, float(value)
    return "", None


def section_starts(doc: rr.Document, inp: Inputs) -> None:
    """Rows per start within each family (same network, backbone and input size), the figure, the verdict."""
    doc.add(rr.Heading(2, SECTIONS[4]))
    table = sc.comparison_table(inp.runs)
    if table.empty:
        doc.add(rr.Para("No evaluated runs: nothing to compare."))
        return
    doc.add(
        rr.Para(
            "The study fine-tuned ImageNet weights and never trained the same networks from scratch, so it could not "
            "say what pretraining buys. Here each network is trained from each start on the same subsets; rows differ "
            "only in their starting weights."
        )
    )
    doc.add(
        rr.Table(
            [
                "family",
                "size",
                "train images",
                "start",
                "weights from",
                "role",
                "accuracy",
                "95 % CI (Wilson)",
                "epochs",
            ],
            [
                [
                    r.family,
                    r.size,
                    integer(r.n_train),
                    start_label(r.start),
                    r.start_source or DASH,
                    r.role,
                    pct(r.accuracy),
                    ci({"accuracy_ci_low": r.ci_low, "accuracy_ci_high": r.ci_high}),
                    integer(r.epochs),
                ]
                for r in table.itertuples()
            ],
            "Accuracy on the test writers (validation where a run has no test set) per family, size and start.",
        )
    )
    duel = sc.versus(table)
    if not duel.empty:
        doc.add(
            rr.Table(
                ["family", "size", "ImageNet", "scratch", "difference", "ImageNet better, intervals disjoint"],
                [
                    [
                        r.family,
                        r.size,
                        pct(r.imagenet),
                        pct(r.scratch),
                        pp(r.difference),
                        "yes" if r.better_wins else "**no**",
                    ]
                    for r in duel.itertuples()
                ],
                "ImageNet start against scratch: the difference counts as shown only where the 95 % intervals "
                "do not overlap.",
            )
        )
    glyph_comparison.add_section(doc, table, inp.runs_dir)
    path = inp.figures_dir / "starts.png"
    doc.add(
        rr.Figure(path, "Accuracy vs training-set size, ImageNet start vs scratch, with 95 % Wilson intervals.")
        if path.exists()
        else rr.Para(f"No start-comparison figure under `{inp.figures_dir}`.")
    )
    differences = sc.study_differences(inp.runs)
    if differences:
        doc.add(rr.Para("What differs from the study:"), rr.Bullets(differences))


def efficiency_cells(
    name: str,
    params: Any,
    epochs: str,
    per_epoch: str,
    images_per_second: str,
    total: Any,
    summary: dict,
    role: str,
    acc: float | None,
) -> list[str]:
    """One row of the efficiency table; what each point of accuracy cost: seconds and parameters per point."""
    per_point = acc * 100 if acc else None
    return [
        name,
        integer(params),
        epochs,
        per_epoch,
        images_per_second,
        seconds(total),
        str(summary.get("device") or DASH),
        integer(summary.get("gpus", summary.get("world_size"))),
        f"{pct(acc)} ({role})" if acc is not None else DASH,
        seconds(total / per_point) if per_point and total is not None else DASH,
        integer(params / per_point) if per_point and isinstance(params, (int, float)) else DASH,
    ]


def section_efficiency(doc: rr.Document, inp: Inputs) -> None:
    doc.add(rr.Heading(2, SECTIONS[5]))
    rows = []
    for run in inp.runs:
        s = run.summary or {}
        role, acc = headline_accuracy(run)
        rows.append(
            efficiency_cells(
                run.name,
                (run.metrics or {}).get("parameters") or summary_parameters(s),
                integer(s.get("epochs")),
                seconds(run.seconds_per_epoch),
                num(s.get("images_per_second"), 1),
                s.get("seconds_total"),
                s,
                role,
                acc,
            )
        )
    average = exported.average(inp.runs, inp.export)
    if average:  # an exported average of runs: its cost is theirs summed
        rows.append(
            efficiency_cells(
                average.name,
                average.parameters,
                average.epochs,
                DASH,
                DASH,
                average.training_seconds,
                average.summary,
                average.role,
                average.accuracy,
            )
        )
    if rows:
        doc.add(
            rr.Table(
                [
                    "run",
                    "parameters",
                    "epochs",
                    "time per epoch",
                    "images/s",
                    "training time",
                    "device",
                    "GPUs",
                    "accuracy",
                    "training time per point",
                    "parameters per point",
                ],
                rows,
                "From each run's train.json, history.csv and metrics; accuracy is on the test writers "
                "(validation when there is no test set); 'per point' divides by the accuracy in "
                "percentage points — the cost of each point of accuracy. An `export:` row is an exported "
                "average of runs: its training time and parameters are its runs' summed.",
            )
        )
    else:
        doc.add(rr.Para("No training summaries found."))
    bench = inp.benchmarks
    if bench.empty:
        doc.add(rr.Para("No Snakemake benchmark files were found, so wall time per rule is not available."))
        return
    per_rule = bench.groupby("rule").agg(
        jobs=("job", "count"), total=("s", "sum"), longest=("s", "max"), rss=("max_rss", "max")
    )
    per_rule = per_rule.sort_values("total", ascending=False)
    doc.add(
        rr.Table(
            ["rule", "jobs", "total wall time", "longest job", "peak RSS (MB)"],
            [
                [rule, integer(r.jobs), seconds(r.total), seconds(r.longest), num(r.rss, 0)]
                for rule, r in per_rule.iterrows()
            ],
            "Wall time per rule, summed over its jobs (Snakemake benchmark files).",
        )
    )
    doc.add(
        rr.Table(
            ["job", "wall time", "CPU time", "peak RSS (MB)", "mean load"],
            [
                [r.job, seconds(r.s), seconds(r.cpu_time), num(r.max_rss, 0), num(r.mean_load, 1)]
                for r in bench.itertuples()
            ],
            "Every benchmarked job.",
        )
    )


def section_provenance(doc: rr.Document, inp: Inputs) -> None:
    doc.add(rr.Heading(2, SECTIONS[6]))
    rev, dirty = inp.git
    doc.add(
        rr.Bullets(
            [
                f"git revision: `{rev}`"
                + (" (work tree has uncommitted changes)" if dirty else " (clean)" if dirty is False else "")
                if rev
                else "git revision: not available (not a git checkout)",
                f"report generated: {inp.generated}",
                f"params: {('`' + inp.params_source + '`') if inp.params_source else 'not given'}",
            ]
        )
    )
    doc.add(rr.Note(start_summary(inp.runs)))
    if inp.runs:
        doc.add(
            rr.Table(
                ["run", "start (weights)", "weights from", "pretrained requested", "device", "GPUs", "world size"],
                [
                    [
                        r.name,
                        "**" + start_label(r.start) + "**",
                        str((r.summary or {}).get("start_source") or DASH),
                        str((r.summary or {}).get("pretrained", DASH)),
                        str((r.summary or {}).get("device") or DASH),
                        integer((r.summary or {}).get("gpus")),
                        integer((r.summary or {}).get("world_size")),
                    ]
                    for r in inp.runs
                ],
                "Where each run's weights started. The study fine-tuned ImageNet weights; a run from scratch is "
                "a different setting.",
            )
        )
    if inp.params:
        doc.add(rr.Code(json.dumps(inp.params, indent=2, ensure_ascii=False), "params (as passed to the report)"))


def start_summary(runs: list[rd.Run]) -> str:
    if not runs:
        return "No runs found."
    scratch = [r.name for r in runs if r.from_scratch]
    imagenet = [r.name for r in runs if r.start == "imagenet"]
    other = [f"{r.name} ({r.start})" for r in runs if r.start not in ("scratch", "imagenet")]
    parts = []
    if imagenet:
        parts.append(f"started from ImageNet weights (the study's transfer-learning setting): {', '.join(imagenet)}")
    if scratch:
        parts.append(f"trained **from scratch** — NOT the study's transfer-learning setting: {', '.join(scratch)}")
    if other:
        parts.append(f"other starts: {', '.join(other)}")
    return f"Of {len(runs)} run(s): " + "; ".join(parts) + "."


# ----------------------------------------------------------------------------- discussion


def discussion(inp: Inputs) -> list[str]:
    """Claims computed from the numbers in the report; each names the numbers it rests on."""
    claims: list[str] = []
    runs = inp.runs
    best, role = best_run(runs)
    if best is None:
        return ["No evaluated runs: there is nothing to discuss yet."]
    b = best.role(role)
    claims.append(
        f"The best run on the {role} set is {best.name} ({start_label(best.start)}): {pct(b['accuracy'])} "
        f"accuracy, 95 % CI {ci(b)}, n = {integer(b.get('n'))}."
    )
    scored = sorted(
        (r for r in runs if r.role(role) and is_number(r.role(role).get("accuracy"))),
        key=lambda r: r.role(role)["accuracy"],
        reverse=True,
    )
    if len(scored) > 1:
        second = scored[1]
        s = second.role(role)
        overlap = (
            is_number(s.get("accuracy_ci_high"))
            and is_number(b.get("accuracy_ci_low"))
            and s["accuracy_ci_high"] >= b["accuracy_ci_low"]
        )
        claims.append(
            f"Runner-up: {second.name} at {pct(s['accuracy'])} ({100 * (b['accuracy'] - s['accuracy']):.2f} pp "
            "behind); "
            + (
                "the two 95 % intervals overlap, so this data does not clearly separate them."
                if overlap
                else "the two 95 % intervals do not overlap."
            )
        )
    for model in dict.fromkeys(r.model for r in runs):
        ladder = [r for r in runs if r.model == model and r.role(role) and is_number(r.role(role).get("accuracy"))]
        ladder.sort(key=lambda r: rd.size_key(r.size))
        if len(ladder) < 2:
            continue
        accs = [r.role(role)["accuracy"] for r in ladder]
        trend = (
            "rose with every larger training set"
            if all(a2 > a1 for a1, a2 in zip(accs, accs[1:], strict=False))
            else "did not rise monotonically with training-set size"
        )
        claims.append(
            f"{model}: {role} accuracy {trend} ("
            + ", ".join(f"{r.size} {pct(a)}" for r, a in zip(ladder, accs, strict=False))
            + f"; {ladder[-1].size} vs {ladder[0].size}: {pp(accs[-1] - accs[0])})."
        )
    gaps = [
        (r, r.role("val")["accuracy"] - r.role("test")["accuracy"])
        for r in runs
        if r.role("val")
        and r.role("test")
        and is_number(r.role("val").get("accuracy"))
        and is_number(r.role("test").get("accuracy"))
    ]
    if gaps:
        mean_gap = sum(g for _, g in gaps) / len(gaps)
        worst = max(gaps, key=lambda x: abs(x[1]))
        claims.append(
            f"Validation minus test accuracy averages {pp(mean_gap)} over {len(gaps)} run(s); the largest gap is "
            f"{pp(worst[1])} ({worst[0].name})."
            + (
                " Under the writer protocol the test writers take no part in training or model selection."
                if all(r.protocol == "writer" for r, _ in gaps)
                else ""
            )
        )
    comparisons = []
    for run in runs:
        study = _study_row(inp.study1, run.model, run.size)
        val = run.role("val") or {}
        if study is not None and is_number(study["val_accuracy"]) and is_number(val.get("accuracy")):
            comparisons.append((run, val["accuracy"] - float(study["val_accuracy"]), float(study["val_accuracy"])))
    if comparisons:
        higher = sum(1 for _, d, _ in comparisons if d > 0)
        detail = ", ".join(
            f"{r.name} {pct(r.role('val')['accuracy'])} vs {pct(s)} ({pp(d)})" for r, d, s in comparisons
        )
        protocols = {r.protocol for r, _, _ in comparisons}
        caveat = (
            " Our validation writers are unseen in training (writer protocol) while the study's were shared with "
            "training, so the two numbers measure different things."
            if "writer" in protocols
            else ""
        )
        scratch = [r.name for r, _, _ in comparisons if r.from_scratch]
        caveat += f" {', '.join(scratch)} started from scratch, unlike the study's ImageNet start." if scratch else ""
        claims.append(
            f"Against the study's published validation accuracy, {higher} of {len(comparisons)} comparable run(s) "
            f"score higher: {detail}.{caveat}"
        )
    for (model, size), table in inp.sweeps.items():
        ok = table[table["val_accuracy"].notna()]
        if ok.empty:
            continue
        top = ok.loc[ok["val_accuracy"].idxmax()]
        claim = (
            f"Sweep {model}/{size}: our best cell is {int(top['gpus'])} GPU(s), lr {top['learning_rate']:g}, batch "
            f"{int(top['batch_size'])} at {pct(top['val_accuracy'])}"
        )
        if model == "inception_gru" and size == "small" and not inp.study2.empty:
            st = inp.study2.loc[inp.study2["val_accuracy"].idxmax()]
            claim += (
                f"; the study's best is {int(st['gpus'])} GPU(s), lr {st['learning_rate']:g}, batch "
                f"{int(st['batch_size'])} "
                f"at {pct(st['val_accuracy'])}"
            )
        claims.append(claim + ".")
    eces = [(r, r.role(role)["ece"]) for r in runs if r.role(role) and is_number(r.role(role).get("ece"))]
    if eces:
        lo = min(eces, key=lambda x: x[1])
        hi = max(eces, key=lambda x: x[1])
        claims.append(
            f"Calibration on {role}: expected calibration error ranges from {num(lo[1])} ({lo[0].name}) to "
            f"{num(hi[1])} ({hi[0].name})."
        )
    scratch = [r for r in runs if r.from_scratch]
    if scratch:
        claims.append(
            f"{len(scratch)} of {len(runs)} run(s) started from scratch ({', '.join(r.name for r in scratch)}); their "
            "numbers measure a different setting from the study's ImageNet fine-tuning."
        )
    return claims


def section_discussion(doc: rr.Document, inp: Inputs) -> None:
    doc.add(rr.Heading(2, SECTIONS[7]), rr.Bullets(discussion(inp)))


def build_document(inp: Inputs) -> rr.Document:
    doc = rr.Document(TITLE)
    doc.add(
        rr.Para(
            'Re-run of "Handwritten Chinese Character Recognition with Neural Networks" (EfficientNetV2-S and '
            'InceptionV3+GRU on Chinese MNIST). Numbers labelled "study\'s" are the published ones; all others '
            "were measured by this pipeline."
        )
    )
    doc.add(rr.Note(start_summary(inp.runs)))
    for section in (
        section_data,
        section_table1,
        section_table2,
        section_test,
        lambda doc, inp: exported.section(doc, inp.runs, inp.export, inp.benchmarks),
        lambda doc, inp: robustness_section.section(doc, inp.figures_dir.parent),  # reports/robustness/
        writer_cv.section,  # a part of section 4 under subsets.protocol writer_cv
        section_starts,
        section_efficiency,
        section_provenance,
        section_discussion,
    ):
        section(doc, inp)
    return doc


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hccr report", description="Assemble reports/report.md and a self-contained report.html."
    )
    p.add_argument("--metrics-dir", required=True, help="reports/metrics")
    p.add_argument("--evaluation-dir", required=True, help="reports/evaluation")
    p.add_argument("--runs-dir", required=True, help="models/runs (one {model}/{size} folder per run)")
    p.add_argument("--sweep-summary", default="models/sweep/summary.csv", help="hccr.evaluation.sweep's table")
    p.add_argument("--figures-dir", required=True, help="reports/figures")
    p.add_argument("--benchmarks-dir", default="logs/benchmarks", help="Snakemake benchmark TSVs (may be absent)")
    p.add_argument(
        "--writer-cv-dir", default="models/cv", help="writer cross-validation's summary.json, per_writer.csv"
    )
    p.add_argument("--export-dir", default="models/export", help="the exported model's folder (its parity.json)")
    p.add_argument("--params-json", help="the run's params (params.yaml as JSON): inline or a file")
    p.add_argument("--reference-dir", default=str(REFERENCE_DIR), help="the study's published numbers")
    p.add_argument("--repo", help="git checkout to read the revision from (default: the current folder)")
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-html", required=True)
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    doc = build_document(gather(args))
    markdown = rr.to_markdown(doc, Path(args.out_md).resolve().parent)
    page = rr.to_html(doc)
    write_text(args.out_md, markdown)
    write_text(args.out_html, page)
    print(f"report: {args.out_md}, {args.out_html}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
