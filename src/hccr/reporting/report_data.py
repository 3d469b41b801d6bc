"""Gather what the report needs from the run folders, evaluation outputs and benchmark logs.

Every reader tolerates absence (returns None / an empty table) so the report can say
"not available" instead of failing; malformed files raise DataError naming the file.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hccr.errors import DataError
from hccr.files import read_json_object
from hccr.reporting import plots

SIZE_ORDER = ("tiny", "small", "medium", "large", "full")
BENCHMARK_COLUMNS = (
    "s",
    "h:m:s",
    "max_rss",
    "max_vms",
    "max_uss",
    "max_pss",
    "io_in",
    "io_out",
    "mean_load",
    "cpu_time",
)
FIGURE_KINDS = ("curves", "sizes", "sweep", "confusion", "misclassified")


def read_json(path: Path) -> dict[str, Any] | None:
    return read_json_object(path, "JSON file", missing_ok=True)


def size_key(size: str) -> tuple[int, str]:
    return (SIZE_ORDER.index(size) if size in SIZE_ORDER else len(SIZE_ORDER), size)


@dataclass
class Run:
    model: str
    size: str
    metrics: dict[str, Any] | None
    details: dict[str, Any] | None
    summary: dict[str, Any] | None
    history: pd.DataFrame | None

    @property
    def name(self) -> str:
        return f"{self.model}/{self.size}"

    @property
    def start(self) -> str:
        for source in (self.metrics, self.summary):
            if source and source.get("start"):
                return str(source["start"])
        return "unknown"

    @property
    def from_scratch(self) -> bool:
        return self.start == "scratch"

    @property
    def protocol(self) -> str | None:
        return (self.metrics or {}).get("protocol") or (self.details or {}).get("protocol")

    def role(self, role: str) -> dict[str, Any] | None:
        return (self.metrics or {}).get(role)

    def history_row(self, epoch: Any) -> pd.Series | None:
        """The history row of `epoch` (the best epoch, usually); None if unknown."""
        if self.history is None or epoch is None:
            return None
        rows = self.history[self.history["epoch"] == epoch]
        return rows.iloc[-1] if len(rows) else None

    @property
    def seconds_per_epoch(self) -> float | None:
        if self.history is not None and "seconds" in self.history and len(self.history):
            return float(self.history["seconds"].mean())
        s = self.summary or {}
        if s.get("seconds_total") and s.get("epochs"):
            return float(s["seconds_total"]) / float(s["epochs"])
        return None


def discover_runs(
    metrics_dir: Path, evaluation_dir: Path, runs_dir: Path, model_order: list[str] | None = None
) -> list[Run]:
    """Every {model}/{size} that has a metrics file or a train.json (runs_dir: models/runs), in model then size "
    "order."""
    keys: set[tuple[str, str]] = set()
    if metrics_dir.is_dir():
        keys |= {(p.parent.name, p.stem) for p in metrics_dir.glob("*/*.json")}
    if runs_dir.is_dir():
        keys |= {(p.parent.parent.name, p.parent.name) for p in runs_dir.glob("*/*/train.json")}
    order = list(model_order or [])

    def key(k: tuple[str, str]):
        model, size = k
        return (order.index(model) if model in order else len(order), model, size_key(size))

    runs = []
    for model, size in sorted(keys, key=key):
        history_path = runs_dir / model / size / "history.csv"
        history = plots.read_history(history_path) if history_path.exists() else None
        runs.append(
            Run(
                model=model,
                size=size,
                metrics=read_json(metrics_dir / model / f"{size}.json"),
                details=read_json(evaluation_dir / model / size / "details.json"),
                summary=read_json(runs_dir / model / size / "train.json"),
                history=history,
            )
        )
    return runs


def read_sweeps(summary: Path) -> dict[tuple[str, str], pd.DataFrame]:
    """(model, size) -> its sweep cells, with the last epoch's losses, from models/sweep/summary.csv."""
    if not summary.is_file():
        return {}
    table = plots.read_sweep_summary(summary)
    sweeps = {}
    for (model, size), rows in table.groupby(["model", "size"], sort=True):
        cells = plots.sweep_cells(rows, str(model), str(size))
        finals = rows[["train_loss", "train_accuracy", "val_loss", "val_accuracy"]].add_prefix("final_")
        sweeps[(str(model), str(size))] = pd.concat([cells, finals.reset_index(drop=True)], axis=1)
    return sweeps


def read_benchmarks(benchmarks_dir: Path) -> pd.DataFrame:
    """One row per Snakemake benchmark TSV (repeats averaged); `rule` = first sub-folder, or the file stem."""
    rows = []
    if not benchmarks_dir.is_dir():
        return pd.DataFrame(columns=["rule", "job", "s", "max_rss", "cpu_time", "mean_load"])
    for path in sorted(benchmarks_dir.rglob("*.tsv")):
        try:
            table = pd.read_csv(path, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{path}: not a benchmark TSV ({exc})") from exc
        if "s" not in table.columns:
            raise DataError(f"{path}: missing column s (Snakemake benchmark format: {' '.join(BENCHMARK_COLUMNS)})")
        rel = path.relative_to(benchmarks_dir)
        numeric = table.apply(pd.to_numeric, errors="coerce")
        rows.append(
            {
                "rule": rel.parts[0] if len(rel.parts) > 1 else path.stem,
                "job": rel.with_suffix("").as_posix(),
                "s": float(numeric["s"].mean()),
                "max_rss": float(numeric["max_rss"].max()) if "max_rss" in numeric else float("nan"),
                "cpu_time": float(numeric["cpu_time"].mean()) if "cpu_time" in numeric else float("nan"),
                "mean_load": float(numeric["mean_load"].mean()) if "mean_load" in numeric else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["rule", "job", "s", "max_rss", "cpu_time", "mean_load"])


def read_study_table1(path: Path) -> pd.DataFrame:
    return (
        pd.read_csv(path)
        if path.exists()
        else pd.DataFrame(columns=["model", "size", "train_loss", "train_accuracy", "val_loss", "val_accuracy"])
    )


def find_figure(figures_dir: Path, kind: str, *parts: str) -> Path | None:
    """A figure by the suggested layout (kind/a/b.png) or the flat variants kind/a_b.png, kind_a_b.png."""
    candidates = [
        figures_dir.joinpath(kind, *parts).with_suffix(".png") if parts else None,
        figures_dir / kind / ("_".join(parts) + ".png") if parts else None,
        figures_dir / ("_".join((kind, *parts)) + ".png"),
    ]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def sweep_figures(figures_dir: Path) -> list[Path]:
    return sorted((figures_dir / "sweep").glob("**/*.png")) + sorted(figures_dir.glob("sweep*.png"))


def git_revision(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether the work tree has changes); (None, None) outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, timeout=20)
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=60,
        )
        return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def count_writers(evaluation_dir: Path, run: Run) -> dict[str, int]:
    """Distinct writers per role, from details.json (or predictions.csv when details lack them)."""
    counts = {}
    for role in ("val", "test"):
        block = (run.details or {}).get(role) or {}
        if "writers" in block:
            counts[role] = len(block["writers"])
    if not counts:
        path = evaluation_dir / run.model / run.size / "predictions.csv"
        if path.exists():
            preds = pd.read_csv(path, usecols=["writer", "role"])
            counts = {role: int(group["writer"].nunique()) for role, group in preds.groupby("role")}
    return counts
