"""The bench scripts still run and print the figures they promise (tiny inputs, --smoke).

Speed is not asserted here (figures belong to bench/); these tests only keep the scripts from
rotting: each runs as a real subprocess, on synthetic data, and its output must carry every
figure it promises, as positive numbers, consistent with what the script measured.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hccr.data.synthetic import render

from helpers_data import stroke_glyph
from helpers_serve import save_untrained, tiny_checkpoint
from helpers_train import write_data

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def run_script(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    full_env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + full_env.get("PATH", "")
    full_env.update(env or {})
    return subprocess.run(
        list(args),
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def figure(pattern: str, text: str) -> float:
    match = re.search(pattern, text, flags=re.MULTILINE)
    assert match, f"no line matching {pattern!r} in:\n{text}"
    return float(match.group(1))


@pytest.mark.slow
def test_bench_loader_smoke_prints_both_loaders_ratio_and_step_speeds():
    proc = run_script(sys.executable, str(BENCH / "bench_loader.py"), "--smoke", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "synthetic" in out  # --smoke never needs the archive
    torchvision = figure(rf"^\(a\) torchvision ImageFolder\+PIL, 2 workers:\s+{NUMBER} images/s", out)
    batch_loader = figure(rf"^\(b\) hccr BatchLoader \(host array, 1 thread\):\s+{NUMBER} images/s", out)
    ratio = figure(rf"^ratio \(b\)/\(a\), best: {NUMBER}x", out)
    assert torchvision > 0 and batch_loader > 0
    assert ratio == pytest.approx(batch_loader / torchvision, rel=0.06, abs=0.06)
    for model in ("cnn", "efficientnet"):
        assert (
            figure(
                rf"^train step {model}\s+64 px, batch 16, float32[^:]*:\s+{NUMBER} images/s",
                out,
            )
            > 0
        )


def test_bench_loader_missing_archive_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere.zip"
    proc = run_script(
        sys.executable,
        str(BENCH / "bench_loader.py"),
        "--archive",
        str(missing),
        "--no-steps",
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and str(missing) in proc.stderr


def test_bench_models_smoke_table_and_json(tmp_path):
    import yaml

    from hccr.models import count_parameters, create

    out_json = tmp_path / "models.json"
    proc = run_script(
        sys.executable,
        str(BENCH / "bench_models.py"),
        "--smoke",
        "--threads",
        "1",
        "--json",
        str(out_json),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out_json.read_text(encoding="utf-8"))
    (result,) = data["results"]
    (row,) = result["variants"]
    # The default CPU variant is hccr.training.train's CPU path: float32, channels_last.
    assert (result["model"], result["size"], row["variant"]) == ("cnn", 32, "fp32-cl")
    # The parameter count is the model's own, not a figure made up by the script.
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["model"]["cnn"]
    expected, _ = count_parameters(create("cnn", dict(cfg, input_size=32), "none", num_classes=15)[0])
    assert result["parameters"] == expected
    assert row["train_images_per_s"] > 0 and row["infer_images_per_s"] > 0
    assert row["memory_kind"] == "process peak RSS"
    assert row["peak_memory_mb"] >= result["baseline_rss_mb"] > 0
    assert result["gflop_forward"] > 0
    # The printed table carries the same figures.
    line = next(row for row in proc.stdout.splitlines() if row.startswith("cnn"))
    assert f"{row['train_images_per_s']:.1f}" in line and f"{expected / 1e6:.2f}M" in line


def test_bench_models_rejects_unknown_variant():
    proc = run_script(sys.executable, str(BENCH / "bench_models.py"), "--smoke", "--variants", "fp16")
    assert proc.returncode == 2 and "fp16" in proc.stderr


@pytest.mark.slow
def test_bench_quick_profile_smoke_reports_every_data_job(tmp_path):
    dest = tmp_path / "project"
    out_json = tmp_path / "quick.json"
    proc = run_script(
        sys.executable,
        str(BENCH / "bench_quick_profile.py"),
        "--smoke",
        "--cores",
        "1",
        "--dest",
        str(dest),
        "--json",
        str(out_json),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out_json.read_text(encoding="utf-8"))
    jobs = {row["job"]: row["seconds"] for row in summary["jobs"]}
    assert {"fetch", "index", "resize/64", "subset"} <= set(jobs)
    assert all(seconds > 0 for seconds in jobs.values())
    # Benchmark files are Snakemake's own: one per job under the copy's logs/benchmarks.
    assert len(list((dest / "logs" / "benchmarks").rglob("*.tsv"))) == len(jobs)
    assert summary["sum_of_jobs_s"] == pytest.approx(sum(jobs.values()))
    for job, seconds in jobs.items():
        assert figure(rf"^{re.escape(job)}\s+{NUMBER}", proc.stdout) == pytest.approx(seconds, abs=0.06)
    wall = figure(rf"^end-to-end wall: {NUMBER} s", proc.stdout)
    assert wall == pytest.approx(summary["wall_s"], abs=0.06)
    # One job at a time (--cores 1): the jobs fit inside the end-to-end wall time.
    assert summary["sum_of_jobs_s"] <= wall


def test_gpu_check_script_parses():
    proc = run_script("bash", "-n", str(BENCH / "gpu_check.sh"))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_bench_framing_ablation_prints_one_row_per_variant_on_faint_validation_images(tmp_path):
    """Synthetic glyphs, a random tiny CNN: the table's shape and the native path's invariance."""
    rows = [(code, writer) for writer in (1, 2) for code in range(1, 16)]
    images = np.stack([np.asarray(render(code, writer=writer, sample=1, seed=3).convert("L")) for code, writer in rows])
    writers = [writer for _, writer in rows]
    roles = ["val" if writer == 1 else "test" for writer in writers]
    data = write_data(tmp_path, images, [code - 1 for code, _ in rows], writers, roles)
    model = tiny_checkpoint(tmp_path / "checkpoint.pt")
    transforms = ["original", "shifted far", "textured dark"]
    variants = ["predict (all steps)", "ink smoothing: 3x3 median (before)"]
    proc = run_script(
        sys.executable,
        str(BENCH / "bench_framing_ablation.py"),
        *("--model", str(model), "--images", str(data / "images.npy"), "--index", str(data / "index.csv")),
        *("--split", str(data / "split.csv"), "--role", "val", "--ink", "0.6", "--threads", "1"),
        *("--transforms", *transforms, "--variants", *variants),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "# val images: 15" in out and "# ink: 0.6" in out
    assert f"| variant | {' | '.join(transforms)} | s |" in out
    table = {}
    for variant in variants:
        cells = re.search(rf"^\| {re.escape(variant)} \| (.*) \|$", out, flags=re.MULTILINE)
        assert cells, f"no row for {variant!r} in:\n{out}"
        table[variant] = [float(cell.split()[0]) for cell in cells.group(1).split(" | ")]
        assert len(table[variant]) == len(transforms) + 1  # one accuracy per transform, then seconds
        assert all(0 <= accuracy <= 100 for accuracy in table[variant][:-1])
    # A file already in the dataset's format takes the native path, which no framing switch touches.
    assert table[variants[0]][0] == table[variants[1]][0]


LOSSY_FAMILIES_OFF = {"enlarged": 0, "jpeg": 0, "textured": 0}


@pytest.mark.slow
def test_bench_two_framings_prepares_box_framed_arrays_and_scores_a_shift_like_the_original(tmp_path):
    """Framed by the ink box, a padded or inverted file is the original glyph: the same answer.

    Thin strokes (`stroke_glyph`), as the archive's: wider ones than the paper window make a
    padded page's background differ from the native file's."""
    rows = [(code, writer) for writer in (1, 2) for code in range(1, 16)]
    images = np.stack([stroke_glyph(row) for row in range(len(rows))])
    writers = [writer for _, writer in rows]
    data = write_data(tmp_path, images, [code - 1 for code, _ in rows], writers, ["val"] * len(rows))
    out = tmp_path / "reframed"
    proc = run_script(
        sys.executable,
        str(BENCH / "bench_two_framings.py"),
        *("prepare", "--images", str(data / "images.npy"), "--workers", "1", "--out-dir", str(out)),
        # only the families that keep every ink pixel (missing families keep their params weight)
        *("--views-settings", json.dumps({"families": {"inverted": 1, "shifted": 1} | LOSSY_FAMILIES_OFF})),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    framed, views = np.load(out / "images_64.npy"), np.load(out / "views_64.npy")
    assert framed.shape == views.shape == images.shape
    assert "30 glyphs framed by their ink box, 0 refused" in proc.stdout
    # A shifted or inverted view framed by its ink box is its glyph framed the same way.
    assert np.array_equal(views, framed)
    assert not np.array_equal(framed, images)  # the archive's own files are framed too, not passed through

    transforms = ["original", "inverted", "shifted", "shifted far", "textured"]
    proc = run_script(
        sys.executable,
        str(BENCH / "bench_two_framings.py"),
        *("score", "--cell", str(tiny_checkpoint(tmp_path / "cell.pt", seed=0))),
        *("--reframed", str(tiny_checkpoint(tmp_path / "box.pt", seed=1))),
        *("--images", str(data / "images.npy"), "--index", str(data / "index.csv"), "--split", str(data / "split.csv")),
        *("--role", "val", "--threads", "1", "--transforms", *transforms),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "# val images: 30" in proc.stdout
    table = {}
    for name in transforms:
        cells = re.search(rf"^\| {re.escape(name)} \| (.*) \|$", proc.stdout, flags=re.MULTILINE)
        assert cells, f"no row for {name!r} in:\n{proc.stdout}"
        table[name] = cells.group(1).split(" | ")
        assert all(0 <= float(value) <= 100 for value in table[name][:3])
    assert table["original"][3:] == ["0 / 0", "1"]  # the baseline against itself
    for name in ("inverted", "shifted", "shifted far"):
        assert table[name][1] == table["original"][1], name  # the ink-box model sees the same glyph


def lite0_checkpoint(path: Path, images: np.ndarray, batchnorm: bool) -> Path:
    """A random Lite0 (32 px, 16 hidden units) whose hidden biases were moved 100 below zero.

    With `batchnorm`, the head's BatchNorm has learned the statistics of `images` (as training
    would), so in inference mode it re-centres every unit and the shift is undone.
    """
    import torch

    from hccr.data.layout import CHINESE_MNIST
    from hccr.models import create

    torch.manual_seed(0)
    head = {"hidden": 16, "dropout": 0.0, "batchnorm": batchnorm}
    cfg = {"network": "efficientnet", "arch": "tf_efficientnet_lite0", "input_size": 32, "in_chans": 1, "head": head}
    cfg["drop_path_rate"] = 0.0  # train and inference forwards alike
    model, _ = create("efficientnet", cfg, "none", num_classes=len(CHINESE_MNIST))
    with torch.no_grad():
        model.head[1].bias -= 100.0
        if batchnorm:
            for layer in model.modules():
                if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                    layer.momentum = None  # running statistics = this batch's, exactly
            model.train()(torch.from_numpy((images[:, None] / 255.0 - 0.2) / 0.3).float())
    return save_untrained(path, model, "efficientnet", cfg, {"mean": 0.2, "std": 0.3})


def test_bench_dead_head_counts_the_units_no_training_image_fires(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 15
    images = rng.integers(0, 255, (60, 32, 32), dtype=np.uint8)
    data = write_data(tmp_path, images, labels, np.arange(60) // 15, ["train"] * 45 + ["val"] * 15)
    study = lite0_checkpoint(tmp_path / "study.pt", images[:45], batchnorm=False)
    normed = lite0_checkpoint(tmp_path / "batchnorm.pt", images[:45], batchnorm=True)
    proc = run_script(
        sys.executable,
        str(BENCH / "bench_dead_head.py"),
        *("--images", str(data / "images.npy"), "--index", str(data / "index.csv"), "--split", str(data / "split.csv")),
        str(study),
        str(normed),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = r"^\| {} \| scratch \| {} \| 16 \| ([0-9]+) \| ([0-9.]+) % \| 50.0 % \|$"
    assert figure(row.format(re.escape(str(study)), "no"), proc.stdout) == 16  # every unit below zero for every image
    assert figure(row.format(re.escape(str(normed)), "yes"), proc.stdout) == 0  # the BatchNorm re-centred them
