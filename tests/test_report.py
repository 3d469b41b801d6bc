"""hccr.reporting.report: the assembled report from a tiny synthetic tree of runs, evaluations and figures."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hccr.atomic import write_json
from hccr.data.layout import CHINESE_MNIST
from hccr.evaluation import evaluate
from hccr.evaluation import sweep as sweep_table
from hccr.reporting import plots, report

# model, size, start, phases, probability of a correct prediction on val / test
RUNS = [
    ("efficientnet", "small", "imagenet", (("head", 2), ("finetune", 2)), 0.80, 0.70),
    ("cnn", "small", "scratch", (("train", 3),), 0.85, 0.80),
    ("cnn", "medium", "scratch", (("train", 3),), 0.95, 0.92),
]


def fake_predictions(rng, n: int, p_correct: float, first_id: int, writers: range) -> evaluate.RolePredictions:
    labels = np.arange(n) % 15
    right = rng.random(n) < p_correct
    predicted = np.where(right, labels, (labels + 1 + rng.integers(0, 14, n)) % 15)
    logits = rng.normal(0, 0.1, (n, 15))
    logits[np.arange(n), predicted] += 3.0
    return evaluate.RolePredictions(
        ids=np.arange(first_id, first_id + n),
        writers=np.array([writers[i % len(writers)] for i in range(n)]),
        labels=labels,
        logits=logits,
        classes=CHINESE_MNIST,
    )


def write_run(root: Path, model, size, start, phases, p_val, p_test, seed, protocol="writer", with_test=True):
    rng = np.random.default_rng(seed)
    run_dir = root / "models" / "runs" / model / size
    run_dir.mkdir(parents=True)
    rows, epoch = [], 0
    for phase, n in phases:
        for _ in range(n):
            epoch += 1
            rows.append(
                {
                    "epoch": epoch,
                    "phase": phase,
                    "train_loss": 1.5 / epoch,
                    "train_accuracy": 1 - 0.4 / epoch,
                    "val_loss": 1.7 / epoch,
                    "val_accuracy": p_val - 0.1 / epoch,
                    "lr": 1e-3,
                    "seconds": 2.0 + epoch,
                    "images_per_second": 300.0,
                }
            )
    pd.DataFrame(rows).to_csv(run_dir / "history.csv", index=False)
    summary = {
        "model": model,
        "size": size,
        "start": start,
        "pretrained": "auto",
        "epochs": epoch,
        "best_epoch": epoch,
        "best_val_accuracy": p_val,
        "seconds_total": 9.5 * epoch,
        "images_per_second": 300.0,
        "n_train": 150 * (seed + 1),
        # hccr.training.train writes {"total": n, ...}; a bare number is accepted too
        "parameters": {"total": 1234 + seed} if seed % 2 else 1234 + seed,
        "device": "cpu",
        "world_size": 1,
        "gpus": 0,
    }
    (run_dir / "train.json").write_text(json.dumps(summary))
    results = {}
    roles = [("val", p_val, 0, range(0, 3))] + ([("test", p_test, 60, range(7, 10))] if with_test else [])
    for role, p, first, writers in roles:
        pred = fake_predictions(rng, 60, p, first, writers)
        scalars, details = evaluate.score_role(pred, bins=10)
        results[role] = (scalars, details, pred)
    meta = {
        "start": start,
        "epoch": epoch,
        "input_size": 16,
        "normalize": {"mean": 0.1, "std": 0.2},
        **CHINESE_MNIST.to_meta(),
    }
    m, d, preds = evaluate.build_outputs(
        results, model_name=model, size=size, protocol=protocol, meta=meta, summary=summary, parameters=1234 + seed
    )
    write_json(root / "reports" / "metrics" / model / f"{size}.json", m)
    write_json(root / "reports" / "evaluation" / model / size / "details.json", d)
    (root / "reports" / "evaluation" / model / size).mkdir(parents=True, exist_ok=True)
    preds.to_csv(root / "reports" / "evaluation" / model / size / "predictions.csv", index=False)
    return m


def build_tree(root: Path, protocol="writer") -> dict:
    """Runs under models/runs/{model}/{size} (the workflow's layout), the sweep summarised by hccr.evaluation.sweep."""
    metrics = {}
    for seed, (model, size, start, phases, p_val, p_test) in enumerate(RUNS):
        metrics[(model, size)] = write_run(
            root, model, size, start, phases, p_val, p_test, seed, protocol=protocol, with_test=protocol == "writer"
        )
    sweep = root / "models" / "sweep" / "inception_gru" / "small"
    for i, (g, lr, b) in enumerate([(1, "0.0001", 10), (1, "0.001", 40), (4, "0.0001", 40)]):
        run = sweep / f"g{g}-lr{lr}-b{b}"
        run.mkdir(parents=True)
        (run / "train.json").write_text(
            json.dumps({"best_val_accuracy": 0.6 + 0.1 * i, "best_epoch": 2, "start": "scratch"})
        )
        pd.DataFrame(
            [
                {
                    "epoch": 1,
                    "phase": "train",
                    "train_loss": 0.9,
                    "train_accuracy": 0.7,
                    "val_loss": 1.1,
                    "val_accuracy": 0.55 + 0.1 * i,
                    "seconds": 1.0,
                }
            ]
        ).to_csv(run / "history.csv", index=False)
    cells = [str(p) for p in sorted(sweep.iterdir())]
    assert (
        sweep_table.main(
            [
                "--model",
                "inception_gru",
                "--size",
                "small",
                "--cells",
                *cells,
                "--out",
                str(root / "models" / "sweep" / "summary.csv"),
            ]
        )
        == 0
    )
    bench = root / "logs" / "benchmarks"
    (bench / "train").mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (bench / "train" / "cnn_small.tsv").write_text(header + "12.5\t0:00:12\t300.1\t900\t280\t290\t1\t2\t95.0\t11.0\n")
    (bench / "train" / "cnn_medium.tsv").write_text(header + "20.0\t0:00:20\t310.0\t900\t280\t290\t1\t2\t97.0\t19.0\n")
    (bench / "evaluate.tsv").write_text(header + "3.0\t0:00:03\t200.0\t500\t180\t190\t1\t2\t50.0\t2.5\n")
    params = {
        "models": ["efficientnet", "inception_gru", "cnn"],
        "subsets": {
            "protocol": protocol,
            "test_writers": 0.1,
            "val_writers": 0.1,
            "schemes": {"holdout": {"val_per_class": 70}},
        },
        "model": {"cnn": {"scheme": "holdout"}, "efficientnet": {"scheme": "holdout"}},
        "sweep": {
            "model": "inception_gru",
            "size": "small",
            "gpus": [1, 4],
            "learning_rate": [1e-4, 1e-3],
            "batch_size": [10, 40],
        },
    }
    (root / "params.json").write_text(json.dumps(params))
    return metrics


def draw_figures(root: Path) -> list[Path]:
    fig = root / "reports" / "figures"
    images = np.random.default_rng(0).integers(0, 255, (120, 16, 16), dtype=np.uint8)
    np.save(root / "images.npy", images)
    out = []
    for model, size, *_ in RUNS:
        history = root / "models" / "runs" / model / size / "history.csv"
        out.append(fig / "curves" / model / f"{size}.png")
        assert (
            plots.main(["curves", "--history", str(history), "--model", model, "--size", size, "--out", str(out[-1])])
            == 0
        )
    for model in ("efficientnet", "cnn"):
        out.append(fig / "sizes" / f"{model}.png")
        hist = [str(p) for p in sorted((root / "models" / "runs" / model).glob("*/history.csv"))]
        assert plots.main(["sizes", "--model", model, "--history", *hist, "--out", str(out[-1])]) == 0
    out.append(fig / "sweep" / "inception_gru_small.png")
    assert (
        plots.main(
            [
                "sweep",
                "--summary",
                str(root / "models/sweep/summary.csv"),
                "--model",
                "inception_gru",
                "--size",
                "small",
                "--out",
                str(out[-1]),
            ]
        )
        == 0
    )
    best = ("cnn", "medium")  # highest test accuracy by construction (checked in the test)
    ev = root / "reports" / "evaluation" / best[0] / best[1]
    out.append(fig / "confusion" / best[0] / f"{best[1]}.png")
    assert plots.main(["confusion", "--details", str(ev / "details.json"), "--out", str(out[-1])]) == 0
    out.append(fig / "misclassified" / best[0] / f"{best[1]}.png")
    assert (
        plots.main(
            [
                "misclassified",
                "--predictions",
                str(ev / "predictions.csv"),
                "--details",
                str(ev / "details.json"),
                "--images",
                str(root / "images.npy"),
                "--out",
                str(out[-1]),
            ]
        )
        == 0
    )
    return out


PROJECT = Path(__file__).resolve().parents[1]


def run_report(root: Path) -> tuple[str, str]:
    argv = [
        "--export-dir",
        str(root / "models/export"),
        "--repo",
        str(PROJECT),
        "--metrics-dir",
        str(root / "reports/metrics"),
        "--evaluation-dir",
        str(root / "reports/evaluation"),
        "--runs-dir",
        str(root / "models/runs"),
        "--sweep-summary",
        str(root / "models/sweep/summary.csv"),
        "--figures-dir",
        str(root / "reports/figures"),
        "--benchmarks-dir",
        str(root / "logs/benchmarks"),
        "--params-json",
        str(root / "params.json"),
        "--out-md",
        str(root / "reports/report.md"),
        "--out-html",
        str(root / "reports/report.html"),
    ]
    assert report.main(argv) == 0
    return (root / "reports/report.md").read_text(encoding="utf-8"), (root / "reports/report.html").read_text(
        encoding="utf-8"
    )


def test_full_report_has_every_section_table_and_embedded_figure(tmp_path):
    metrics = build_tree(tmp_path)
    figures = draw_figures(tmp_path)
    md, page = run_report(tmp_path)
    for heading in report.SECTIONS:
        assert f"## {heading}" in md
        assert f"<h2>{heading}</h2>" in page
    # Table 1 beside the study's numbers; Table 2 with the study's sweep
    assert "study's val acc" in md and "| efficientnet | small | ImageNet (pretrained) |" in md
    assert "93.14 %" in md  # the study's EfficientNet small val accuracy, beside our run
    assert "The study's Table 2 as published" in md and "| model12 |" in md and "99.33 %" in md
    assert "Sweep of inception_gru/small" in md
    # test results with the Wilson interval of the best run, exactly as evaluated
    best = max(metrics.values(), key=lambda m: m["test"]["accuracy"])
    assert (best["model"], best["size"]) == ("cnn", "medium")
    interval = f"[{report.pct(best['test']['accuracy_ci_low'])}, {report.pct(best['test']['accuracy_ci_high'])}]"
    assert interval in md
    assert (
        f"The best run on the test set is cnn/medium (scratch (random init)): {report.pct(best['test']['accuracy'])}"
        in md
    )
    # data: training images per run from train.json
    assert "| cnn/medium | writer | holdout | 450 | 60 | 3 | 60 | 3 |" in md
    # efficiency: parameters (both train.json forms), benchmark totals per rule (12.5 + 20.0 s for train)
    assert "| efficientnet/small | 1,234 |" in md and "| cnn/small | 1,235 |" in md
    assert "| cnn/medium | 1,236 | 3 | 4.0 s | 300.0 | 28.5 s | cpu |" in md
    assert "| train | 2 | 32.5 s |" in md and "| evaluate | 1 | 3.0 s |" in md
    # the cost of each point of accuracy: training seconds and parameters per percentage point
    cnn_medium = metrics[("cnn", "medium")]["test"]["accuracy"] * 100
    assert (
        f"| cnn/medium | 1,236 | 3 | 4.0 s | 300.0 | 28.5 s | cpu | 0 | {report.pct(cnn_medium / 100)} (test) | "
        f"{report.seconds(28.5 / cnn_medium)} | {int(1236 / cnn_medium):,} |"
    ) in md
    # provenance: every run's start stated; scratch runs flagged
    for model, size, start, *_ in RUNS:
        assert f"| {model}/{size} | **{report.start_label(start)}** |" in md
    assert "NOT the study's transfer-learning setting: cnn/small, cnn/medium" in md
    if (PROJECT / ".git").exists():
        assert re.search(r"git revision: `[0-9a-f]{40}` \((clean|work tree has uncommitted changes)\)", md)
    # every figure is embedded as a data URI, and nothing is fetched from elsewhere
    for path in figures:
        assert base64.b64encode(path.read_bytes()).decode("ascii") in page, path
        assert Path("figures", *path.relative_to(tmp_path / "reports" / "figures").parts).as_posix() in md
    assert page.count('src="data:image/png;base64,') == len(figures)
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', page)
    assert "<link" not in page and "<script" not in page


def test_discussion_claims_come_from_the_numbers(tmp_path):
    metrics = build_tree(tmp_path)
    md, _ = run_report(tmp_path)
    discussion = md.split("## 8. Discussion")[1]
    small, medium = metrics[("cnn", "small")]["test"]["accuracy"], metrics[("cnn", "medium")]["test"]["accuracy"]
    trend = "rose with every larger training set" if medium > small else "did not rise monotonically"
    assert f"cnn: test accuracy {trend} (small {report.pct(small)}, medium {report.pct(medium)}" in discussion
    gaps = [m["val"]["accuracy"] - m["test"]["accuracy"] for m in metrics.values()]
    assert f"averages {report.pp(sum(gaps) / len(gaps))} over 3 run(s)" in discussion
    eff_val = metrics[("efficientnet", "small")]["val"]["accuracy"]
    assert f"efficientnet/small {report.pct(eff_val)} vs 93.14 % ({report.pp(eff_val - 0.9314)})" in discussion
    assert "2 of 3 run(s) started from scratch" in discussion
    # every percentage in the discussion appears elsewhere in the report (a table or figure caption)
    body = md.split("## 8. Discussion")[0]
    for value in re.findall(r"\d+\.\d\d %", discussion):
        assert value in body, value


def test_paper_protocol_and_missing_inputs_are_stated(tmp_path):
    build_tree(tmp_path, protocol="paper")
    import shutil

    shutil.rmtree(tmp_path / "models" / "sweep")
    shutil.rmtree(tmp_path / "logs")
    md, page = run_report(tmp_path)  # no figures at all, no sweep, no benchmarks
    for heading in report.SECTIONS:
        assert f"## {heading}" in md
    assert "there is **no test set**" in md and "<strong>no test set</strong>" in page
    assert "No sweep runs were found" in md and "No Snakemake benchmark files were found" in md
    assert "No curve figures found" in md
    assert "The best run on the val set is" in md
    # the flat models/{model}/{size} layout is read too: best epoch 4, train loss 1.5 / 4 from history.csv
    assert f"| efficientnet | small | ImageNet (pretrained) | 4 | {1.5 / 4:.4f} |" in md
    assert "data:image/png" not in page


def test_empty_tree_still_builds(tmp_path):
    for d in ("m", "e", "models", "f"):
        (tmp_path / d).mkdir()
    argv = [
        "--metrics-dir",
        str(tmp_path / "m"),
        "--evaluation-dir",
        str(tmp_path / "e"),
        "--runs-dir",
        str(tmp_path / "models"),
        "--figures-dir",
        str(tmp_path / "f"),
        "--benchmarks-dir",
        str(tmp_path / "b"),
        "--out-md",
        str(tmp_path / "r.md"),
        "--out-html",
        str(tmp_path / "r.html"),
    ]
    assert report.main(argv) == 0
    md = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "No runs found" in md and "nothing to discuss" in md
    assert report.main(argv[:-4] + ["--params-json", str(tmp_path / "nope.json")] + argv[-4:]) == 2


def test_bad_metrics_file_names_the_file(tmp_path, capsys):
    build_tree(tmp_path)
    (tmp_path / "reports/metrics/cnn/small.json").write_text("{not json")
    with pytest.raises(AssertionError):
        run_report(tmp_path)
    assert "small.json" in capsys.readouterr().err
    assert not (tmp_path / "reports/report.md").exists()


def write_parity(root: Path, **fields) -> None:
    write_json(root / "models" / "export" / "parity.json", {"passed": True, **fields})


def bench_job(root: Path, job: str, wall: float) -> None:
    path = root / "logs" / "benchmarks" / f"{job}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\tmax_rss\tcpu_time\tmean_load\n{wall}\t100.0\t{wall}\t90.0\n")


def test_an_exported_average_gets_its_accuracy_interval_and_its_runs_cost(tmp_path):
    from scipy.stats import binomtest

    build_tree(tmp_path)
    members = [
        {"run": "cnn/small", "framing": "cell", "val_accuracy": 0.85, "test_accuracy": 0.8},
        {"run": "cnn/medium", "framing": "ink_box", "val_accuracy": 0.95, "test_accuracy": 0.9},
    ]
    write_parity(
        tmp_path, model="ensemble", size="small", val_accuracy=0.9, val_images=60, test_accuracy=58 / 60,
        test_images=60, members=members,
    )  # fmt: skip
    bench_job(tmp_path, "reframe/ink_box/64", 7.0)
    bench_job(tmp_path, "views/ink_box/64", 5.0)
    bench_job(tmp_path, "views/64", 4.0)  # the cell views serve every model: not the ensemble's own cost
    md, _ = run_report(tmp_path)
    part = md.split("### The exported model", 1)[1].split("\n## ", 1)[0]
    low, high = binomtest(58, 60).proportion_ci(method="wilson")
    assert f"| **average of the 2** (exported) | cell + ink_box | 90.00 % | 96.67 % | [{report.pct(low)}, " in part
    assert f"{report.pct(high)}] |" in part
    # each run alone, as its own evaluation scored it
    small = json.loads((tmp_path / "reports/metrics/cnn/small.json").read_text())
    val, test = report.pct(small["val"]["accuracy"]), report.pct(small["test"]["accuracy"])
    assert f"| `cnn/small` | cell | {val} | {test} |" in part
    # cost: both trainings (3 epochs x 9.5 s each), the ink-box framing's data steps only, 2 passes
    assert "Training: 57.0 s (28.5 s + 28.5 s)." in part
    assert "12.0 s (`reframe/ink_box/64` 7.0 s, `views/ink_box/64` 5.0 s)" in part and "views/64`" not in part
    assert "Inference: 2 forward passes per image, 2,471 parameters in all." in part
    efficiency = md.split("## 6. Efficiency", 1)[1]
    points = 100 * 58 / 60
    assert (
        f"| export: cnn/small + cnn/medium | 2,471 | 3 + 3 | — | — | 57.0 s | cpu | 0 | 96.67 % (test) | "
        f"{report.seconds(57.0 / points)} | {int(2471 / points):,} |"
    ) in efficiency


def test_a_single_exported_run_is_named_and_adds_no_efficiency_row(tmp_path):
    metrics = build_tree(tmp_path)
    write_parity(tmp_path, model="cnn", size="medium")
    md, _ = run_report(tmp_path)
    part = md.split("### The exported model", 1)[1].split("\n## ", 1)[0]
    assert "`export.select` picked `cnn/medium`, the run with the best validation accuracy" in part
    test = metrics[("cnn", "medium")]["test"]
    interval = f"[{report.pct(test['accuracy_ci_low'])}, {report.pct(test['accuracy_ci_high'])}]"
    assert f"| {report.pct(test['accuracy'])} | {interval} |" in part  # the evaluation's own interval
    assert "Training: 28.5 s." in part and "Inference: 1 forward pass per image, 1,236 parameters" in part
    assert "| export: " not in md


def test_a_missing_export_is_stated(tmp_path):
    build_tree(tmp_path)
    md, _ = run_report(tmp_path)
    assert "No export was found (`models/export/parity.json`): the export step has not run." in md
