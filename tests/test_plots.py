"""hccr.reporting.plots and hccr.reporting.fonts: valid PNGs, the expected labels, glyphs or the numeric fallback."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hccr import fonts
from hccr.data.layout import CHINESE_MNIST
from hccr.reporting import plots

from helpers_data import CHARACTERS, VALUES


def write_history(path: Path, phases=(("head", 3), ("finetune", 3)), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows, epoch = [], 0
    for phase, n in phases:
        for _ in range(n):
            epoch += 1
            rows.append(
                {
                    "epoch": epoch,
                    "phase": phase,
                    "train_loss": 2.0 / epoch,
                    "train_accuracy": 1 - 0.5 / epoch,
                    "val_loss": 2.2 / epoch,
                    "val_accuracy": 1 - 0.6 / epoch + rng.uniform(0, 0.01),
                    "lr": 1e-4,
                    "seconds": 3.0,
                    "images_per_second": 50.0,
                }
            )
    frame = pd.DataFrame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame


def texts(fig) -> set[str]:
    out = {t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))}
    for ax in fig.axes:
        out |= {ax.get_title(), ax.get_xlabel(), ax.get_ylabel()}
        out |= {t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()}
        legend = ax.get_legend()
        if legend:
            out |= {t.get_text() for t in legend.get_texts()}
    return out


def assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 100 and image.size[1] > 100


def draw_without_missing_glyphs(fig) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.canvas.draw()
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert not missing, missing


def test_fonts_fallback_is_numeric_and_forced_by_env(monkeypatch):
    assert fonts.cjk_font(CHARACTERS, disable=True) is None
    monkeypatch.setenv(fonts.ENV, "none")
    assert fonts.cjk_font(CHARACTERS) is None
    assert fonts.class_labels(None, CHINESE_MNIST) == [str(v) for v in VALUES]
    # a font file named explicitly is used only if it really has the glyphs (DejaVu Sans has none)
    dejavu = Path(__import__("matplotlib").get_data_path()) / "fonts/ttf/DejaVuSans.ttf"
    monkeypatch.setenv(fonts.ENV, str(dejavu))
    assert fonts.cjk_font(CHARACTERS) is None


def test_found_font_really_covers_every_glyph():
    font = fonts.cjk_font(CHARACTERS)
    if font is None:
        pytest.skip("no CJK font installed (CI installs fonts-wqy-microhei)")
    assert fonts.covers(font.path, CHARACTERS)
    assert fonts.class_labels(font, CHINESE_MNIST) == list(CHARACTERS)
    assert not fonts.covers(Path(__import__("matplotlib").get_data_path()) / "fonts/ttf/DejaVuSans.ttf", CHARACTERS)


def test_curves_marks_phase_change_and_overlays_study(tmp_path):
    history = write_history(tmp_path / "history.csv")
    reference = plots.align_reference(history, plots.reference_history("efficientnet", "small"))
    assert reference is not None and reference["epoch"].iloc[0] == 4  # first finetune epoch
    fig = plots.curves_figure(history, title="efficientnet / small", reference=reference)
    labels = texts(fig)
    assert {"accuracy", "loss", "epoch", "phase: finetune", "efficientnet / small"} <= labels
    assert any(plots.STUDY_LABEL in t for t in labels)
    vlines = [line for line in fig.axes[0].lines if list(line.get_xdata()) == [3.5, 3.5]]
    assert vlines, "phase boundary not drawn between epochs 3 and 4"
    # a one-phase (scratch) run gets no study overlay
    scratch = write_history(tmp_path / "scratch.csv", phases=(("scratch", 4),))
    assert plots.align_reference(scratch, plots.reference_history("efficientnet", "small")) is None

    out = tmp_path / "fig" / "curves.png"
    assert (
        plots.main(
            [
                "curves",
                "--history",
                str(tmp_path / "history.csv"),
                "--model",
                "efficientnet",
                "--size",
                "small",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert_png(out)
    data = pd.read_csv(out.with_suffix(".csv"))
    assert {"epoch", "val_accuracy", "study_val_accuracy"} <= set(data.columns)
    study_len = len(plots.reference_history("efficientnet", "small")["val_accuracy"])
    assert data["study_val_accuracy"].notna().sum() == study_len
    assert (
        plots.main(
            [
                "curves",
                "--history",
                str(tmp_path / "nope.csv"),
                "--model",
                "m",
                "--size",
                "s",
                "--out",
                str(tmp_path / "x.png"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "x.png").exists()


def test_sizes_one_line_per_size(tmp_path):
    paths = []
    for i, size in enumerate(("small", "medium", "large")):
        write_history(tmp_path / "models" / "cnn" / size / "history.csv", seed=i)
        paths.append(str(tmp_path / "models" / "cnn" / size / "history.csv"))
    histories = {Path(p).parent.name: plots.read_history(p) for p in paths}
    fig = plots.sizes_figure(histories, model="cnn")
    assert {"small", "medium", "large", "validation accuracy"} <= texts(fig)
    assert len(fig.axes[0].lines) == 3
    out = tmp_path / "sizes.png"
    assert plots.main(["sizes", "--model", "cnn", "--history", *paths, "--out", str(out)]) == 0
    assert_png(out)
    assert set(pd.read_csv(out.with_suffix(".csv"))["size"]) == {"small", "medium", "large"}


def make_sweep(root: Path) -> Path:
    """A models/sweep/summary.csv as hccr.evaluation.sweep writes it (8 cells, plus another model's)."""
    rows = []
    for model in ("inception_gru", "cnn"):
        for g in (1, 4):
            for lr in ("0.0001", "0.001"):
                for b in (10, 40):
                    acc = 0.5 + 0.1 * g * (b / 40) - float(lr) * 100 - (model == "cnn") * 0.3
                    rows.append(
                        {
                            "model": model,
                            "size": "small",
                            "run": f"g{g}-lr{lr}-b{b}",
                            "gpus": g,
                            "learning_rate": float(lr),
                            "batch_size": b,
                            "epochs": 2,
                            "train_loss": 0.5,
                            "train_accuracy": 0.8,
                            "val_loss": 0.6,
                            "val_accuracy": acc - 0.01,
                            "best_val_accuracy": acc,
                            "best_epoch": 2,
                            "seconds_total": 3.0,
                            "start": "scratch",
                        }
                    )
    summary = root / "summary.csv"
    pd.DataFrame(rows).to_csv(summary, index=False)
    return summary


def test_sweep_heatmaps_ours_and_study(tmp_path):
    summary = make_sweep(tmp_path)
    ours = plots.read_sweep(summary, "inception_gru", "small")
    assert len(ours) == 8 and sorted(set(ours["gpus"])) == [1, 4]
    row = ours[(ours["gpus"] == 4) & (ours["learning_rate"] == 1e-4) & (ours["batch_size"] == 40)]
    assert row["val_accuracy"].iloc[0] == pytest.approx(0.5 + 0.4 - 0.01)
    fig = plots.sweep_figure(ours, plots.read_study_table2(), title="sweep")
    labels = texts(fig)
    assert {
        "ours: 1 GPU(s), val accuracy",
        "study's Table 2: 4 GPU(s), val accuracy",
        "batch size",
        "learning rate",
    } <= labels
    assert "0.890" in labels  # our cell's value is written on the map
    assert "0.993" in labels  # the study's best cell (4 GPUs, 1e-4, batch 40)
    out = tmp_path / "sweep.png"
    assert (
        plots.main(
            ["sweep", "--summary", str(summary), "--model", "inception_gru", "--size", "small", "--out", str(out)]
        )
        == 0
    )
    assert_png(out)
    data = pd.read_csv(out.with_suffix(".csv"))
    assert set(data["source"]) == {"ours", "study"} and (data["source"] == "ours").sum() == 8
    assert (
        plots.main(
            [
                "sweep",
                "--summary",
                str(summary),
                "--model",
                "inception_gru",
                "--size",
                "large",
                "--out",
                str(tmp_path / "e.png"),
            ]
        )
        == 2
    )


def write_details(path: Path) -> np.ndarray:
    matrix = np.diag(np.full(15, 4))
    matrix[2, 2], matrix[2, 5] = 1, 3
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "model": "cnn",
                "size": "small",
                "val": {"confusion_matrix": matrix.tolist()},
                "test": {"confusion_matrix": matrix.tolist()},
                **CHINESE_MNIST.to_meta(),
            }
        )
    )
    return matrix


@pytest.mark.parametrize("fallback", [False, True])
def test_confusion_labels_glyphs_or_values(tmp_path, fallback):
    font = None if fallback else fonts.cjk_font(CHARACTERS)
    if not fallback and font is None:
        pytest.skip("no CJK font installed")
    matrix = write_details(tmp_path / "details.json")
    labels = fonts.class_labels(font, CHINESE_MNIST)
    fig = plots.confusion_figure(matrix, labels, title="cm", font=font)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == (list(CHARACTERS) if not fallback else [str(v) for v in VALUES])
    assert "3" in texts(fig)  # the off-diagonal count is written in its cell
    draw_without_missing_glyphs(fig)
    out = tmp_path / "cm.png"
    argv = ["confusion", "--details", str(tmp_path / "details.json"), "--out", str(out)] + (
        ["--no-cjk-font"] if fallback else []
    )
    assert plots.main(argv) == 0
    assert_png(out)
    data = pd.read_csv(out.with_suffix(".csv"))
    cell = data[(data["true"] == 2) & (data["predicted"] == 5)]
    assert cell["count"].iloc[0] == 3 and str(cell["true_label"].iloc[0]) == labels[2]


@pytest.mark.parametrize("fallback", [False, True])
def test_misclassified_grid_titles(tmp_path, fallback, monkeypatch):
    if fallback:
        monkeypatch.setenv(fonts.ENV, "none")
    font = fonts.cjk_font(CHARACTERS)
    if not fallback and font is None:
        pytest.skip("no CJK font installed")
    images = np.random.default_rng(0).integers(0, 255, size=(10, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    preds = pd.DataFrame(
        {
            "id": range(10),
            "writer": 1,
            "role": ["test"] * 8 + ["val"] * 2,
            "true": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            "predicted": [0, 14, 2, 11, 4, 5, 6, 7, 8, 1],
            "confidence": [0.9, 0.8, 0.9, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 0.7],
        }
    )
    preds["true_character"] = [CHARACTERS[i] for i in preds["true"]]
    preds["predicted_character"] = [CHARACTERS[i] for i in preds["predicted"]]
    preds.to_csv(tmp_path / "predictions.csv", index=False)
    rows = plots.select_misclassified(preds, "test", 10)
    assert rows["id"].tolist() == [3, 1]  # test mistakes only, most confident first
    # a frequent confusion yields its best example, then the other pairs, before its second one
    many = pd.DataFrame(
        {
            "id": range(5),
            "role": "test",
            "true": [3, 3, 3, 1, 2],
            "predicted": [11, 11, 11, 14, 0],
            "confidence": [0.9, 0.8, 0.7, 0.6, 0.5],
        }
    )
    assert plots.select_misclassified(many, "test", 4)["id"].tolist() == [0, 3, 4, 1]
    labels = fonts.class_labels(font, CHINESE_MNIST)
    fig = plots.misclassified_figure(rows, images, labels, title="wrong", font=font)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"{labels[3]}→{labels[11]}\n0.95", f"{labels[1]}→{labels[14]}\n0.80"]
    if fallback:
        assert titles[0].startswith("3→100")
    else:
        assert titles[0].startswith("三→百")
    draw_without_missing_glyphs(fig)
    out = tmp_path / "wrong.png"
    (tmp_path / "details.json").write_text(json.dumps(CHINESE_MNIST.to_meta()), encoding="utf-8")
    assert (
        plots.main(
            [
                "misclassified",
                "--predictions",
                str(tmp_path / "predictions.csv"),
                "--details",
                str(tmp_path / "details.json"),
                "--images",
                str(tmp_path / "images.npy"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert_png(out)
    assert pd.read_csv(out.with_suffix(".csv"))["id"].tolist() == [3, 1]
