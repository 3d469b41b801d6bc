"""The report's part on the exported model: what `models/export/` holds, how well it does, what it cost.

Reads `models/export/parity.json` (written by `hccr.serving.export`): the one run that
`export.select` picked, or the runs whose softmax `export.ensemble` averages, each with its own
accuracy. The grid's tables show every run alone; only here (and in the efficiency table's
`export` row) does an average of runs get its accuracy and its cost: the sum of its runs'
training, the data steps that only its members' framings need, and one forward pass per member
for every image it reads (issue 14: "a stronger default for the best run ... with its cost").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hccr.evaluation.evaluate import summary_parameters
from hccr.evaluation.metrics import wilson_interval
from hccr.files import read_json_object
from hccr.reporting import report_data as rd
from hccr.reporting import report_render as rr
from hccr.reporting.formatting import DASH, ci, integer, is_number, pct, seconds

HEADING = "The exported model"
PARITY = "parity.json"
CELL = "cell"  # the archive's own framing: its data steps serve every model, not only the export's members


def read_parity(export_dir: Path) -> dict[str, Any] | None:
    """parity.json of `export_dir`, or None when the export has not run."""
    return read_json_object(Path(export_dir) / PARITY, "export parity", missing_ok=True) or None


def member_names(parity: dict[str, Any]) -> list[str]:
    """The runs the exported model is made of: an ensemble's members, or the one selected run."""
    members = parity.get("members") or []
    if members:
        return [str(m["run"]) for m in members]
    return [f"{parity.get('model')}/{parity.get('size')}"]


def member_runs(runs: list[rd.Run], parity: dict[str, Any]) -> list[rd.Run | None]:
    """The grid's run of each member (None where the grid has none)."""
    by_name = {run.name: run for run in runs}
    return [by_name.get(name) for name in member_names(parity)]


def interval(accuracy: Any, n: Any) -> str:
    """The 95 % Wilson interval of the average's accuracy over n images, as `ci` writes a run's."""
    if not is_number(accuracy) or not is_number(n) or int(n) <= 0:
        return DASH
    low, high = wilson_interval(round(float(accuracy) * int(n)), int(n))
    return ci({"accuracy_ci_low": low, "accuracy_ci_high": high})


def training_seconds(runs: list[rd.Run | None]) -> float | None:
    """The runs' training time summed (None when any run lacks its train.json figure)."""
    totals = [(run.summary or {}).get("seconds_total") if run else None for run in runs]
    return float(sum(totals)) if totals and all(is_number(t) for t in totals) else None


def parameters(runs: list[rd.Run | None]) -> int | None:
    counts = [
        ((run.metrics or {}).get("parameters") or summary_parameters(run.summary or {})) if run else None
        for run in runs
    ]
    return int(sum(counts)) if counts and all(is_number(c) for c in counts) else None


def framing_jobs(parity: dict[str, Any], benchmarks: pd.DataFrame) -> pd.DataFrame:
    """Benchmarked data jobs that exist only for a member's own framing (e.g. reframe/ink_box/64)."""
    framings = {m.get("framing") for m in parity.get("members") or []} - {CELL, None}
    if benchmarks.empty or not framings:
        return benchmarks.iloc[0:0]
    parts = benchmarks["job"].str.split("/")
    return benchmarks[parts.map(lambda p: any(f in p[1:] for f in framings))]


def section(doc: rr.Document, runs: list[rd.Run], parity: dict[str, Any] | None, benchmarks: pd.DataFrame) -> None:
    """A part of section 4: the exported model's accuracy beside its runs', and its cost."""
    doc.add(rr.Heading(3, HEADING))
    if not parity:
        doc.add(rr.Para("No export was found (`models/export/parity.json`): the export step has not run."))
        return
    names, members = member_names(parity), member_runs(runs, parity)
    framings = {str(m["run"]): m.get("framing", CELL) for m in parity.get("members") or []}
    rows = []
    for name, run in zip(names, members, strict=True):
        val, test = ((run.role(role) if run else None) or {} for role in ("val", "test"))
        accuracies = [pct(val.get("accuracy")), pct(test.get("accuracy")), ci(test)]
        rows.append([f"`{name}`", framings.get(name, CELL), *accuracies])
    ensemble = len(names) > 1
    if ensemble:
        test, n_test = parity.get("test_accuracy"), parity.get("test_images")
        rows.append(
            [
                f"**average of the {len(names)}** (exported)",
                " + ".join(framings.get(name, CELL) for name in names),
                pct(parity.get("val_accuracy")),
                pct(test),
                interval(test, n_test),
            ]
        )
    how = (
        f"`export.ensemble` averages the class probabilities of {len(names)} runs, each reading the file in its own "
        "framing"
        if ensemble
        else f"`export.select` picked `{names[0]}`, the run with the best validation accuracy"
    )
    files = "`models/export/` (`model.onnx`, `checkpoint.pt`, `model_card.md`)"
    doc.add(rr.Para(f"{files} is what `hccr predict` loads: {how}."))
    doc.add(
        rr.Table(
            ["run", "framing", "val acc", "test acc", "95 % CI (Wilson)"],
            rows,
            "The exported model on the validation and test writers (every image of each), beside its runs alone.",
        )
    )
    doc.add(rr.Bullets(cost_lines(parity, members, benchmarks)))


def cost_lines(parity: dict[str, Any], members: list[rd.Run | None], benchmarks: pd.DataFrame) -> list[str]:
    lines = []
    total = training_seconds(members)
    each = " + ".join(seconds((run.summary or {}).get("seconds_total")) if run else DASH for run in members)
    lines.append(f"Training: {seconds(total)}" + (f" ({each})." if len(members) > 1 else "."))
    extra = framing_jobs(parity, benchmarks)
    if not extra.empty:
        jobs = ", ".join(f"`{job}` {seconds(s)}" for job, s in zip(extra["job"], extra["s"], strict=True))
        lines.append(f"Data steps only its members' framings need: {seconds(float(extra['s'].sum()))} ({jobs}).")
    count = parameters(members)
    lines.append(
        f"Inference: {len(members)} forward pass{'es' if len(members) > 1 else ''} per image"
        + (f", {integer(count)} parameters in all." if count is not None else ".")
    )
    return lines


@dataclass(frozen=True)
class Average:
    """An exported average of runs, as the efficiency table counts it: its runs' costs summed."""

    name: str
    parameters: int | None
    epochs: str
    training_seconds: float | None
    summary: dict[str, Any]  # the first run's train.json: device and GPUs
    role: str
    accuracy: float | None


def average(runs: list[rd.Run], parity: dict[str, Any] | None) -> Average | None:
    """The exported average of runs, or None when the export is a single run (it has its own row)."""
    if not parity or len(member_names(parity)) < 2:
        return None
    members = member_runs(runs, parity)
    test = parity.get("test_accuracy")
    role, accuracy = ("test", test) if is_number(test) else ("val", parity.get("val_accuracy"))
    return Average(
        name="export: " + " + ".join(member_names(parity)),
        parameters=parameters(members),
        epochs=" + ".join(integer((run.summary or {}).get("epochs") if run else None) for run in members),
        training_seconds=training_seconds(members),
        summary=(members[0].summary or {}) if members[0] else {},
        role=role,
        accuracy=float(accuracy) if is_number(accuracy) else None,
    )
