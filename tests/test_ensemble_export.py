"""Two framings as one exported model (issue 14): `export.ensemble` on real images, end to end.

A cell-framed cnn and an ink-box-framed cnn are trained on 17 writers of the real archive; the
export averages them. What a user gets (predict from the ONNX file or the checkpoint) must be
the mean of what the two runs give alone, each on its own framing, and the figures in
parity.json must be what the two runs' arrays give.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.stats import binomtest

from hccr.data.layout import CHINESE_MNIST
from hccr.data.reframe import main as reframe_main
from hccr.errors import DataError, HccrError
from hccr.models import checkpoint, create, ensemble
from hccr.normalization import normalize
from hccr.serving.export import main as export_main
from hccr.serving.predict import iter_sources, load_predictor, predict_sources
from hccr.serving.preprocess import FRAMINGS, canonical_glyph, glyph_to_size
from test_predict import archive_index, read_archive, train_small_cnn

from helpers_serve import TINY_CNN, png_bytes, save_untrained

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

RUNS = {"cnn": "cell", "cnn_box": "ink_box"}


def member_config(framing: str) -> dict:
    return {**TINY_CNN, "network": "cnn", "framing": framing}


@pytest.fixture(scope="module")
def pair(real_archive, tmp_path_factory):
    """index, cell and ink-box arrays, a writer split, and one trained run per framing."""
    root = tmp_path_factory.mktemp("pair")
    table, handle = read_archive(real_archive)
    writers = sorted(table["suite_id"].unique())[:17]
    table, index = archive_index(table, writers)
    labels = index["label"].to_numpy()
    (root / "data" / "ink_box").mkdir(parents=True)
    index.to_csv(root / "data" / "index.csv", index=False)
    native = np.stack([np.asarray(Image.open(io.BytesIO(handle.read(n)))) for n in table["name"]])
    np.save(root / "data" / "images_64.npy", native)
    np.save(root / "data" / "images_32.npy", np.stack([glyph_to_size(g, 32) for g in native]))
    # The ink-box array comes from the pipeline's own step, as the reframe rule makes it.
    out = root / "data" / "ink_box" / "images_32.npy"
    args = ["--images", str(root / "data" / "images_64.npy"), "--framing", "ink_box", "--size", "32", "--workers", "1"]
    assert reframe_main([*args, "--out", str(out), "--summary", str(out.with_suffix(".json"))]) == 0
    held_out = {writer: role for role, group in (("test", writers[:2]), ("val", writers[2:4])) for writer in group}
    role = index["writer"].map(held_out).fillna("train").to_numpy()
    (root / "splits" / "holdout").mkdir(parents=True)
    pd.DataFrame({"id": index["id"], "role": role}).to_csv(root / "splits" / "holdout" / "small.csv", index=False)

    train = role == "train"
    arrays = {"cell": root / "data" / "images_32.npy", "ink_box": root / "data" / "ink_box" / "images_32.npy"}
    for name, framing in RUNS.items():
        cfg = member_config(framing)
        sized = np.load(arrays[framing])
        model, mean, std = train_small_cnn(sized[train], labels[train], cfg, epochs=5, seed=1)
        with torch.inference_mode():
            right = model(normalize(sized, mean, std)).argmax(1).numpy() == labels
        checkpoint.save(
            root / "models" / name / "small" / "checkpoint.pt",
            classes=CHINESE_MNIST,
            model_name=name,
            config=cfg,
            state_dict=model.state_dict(),
            input_size=32,
            normalize={"mean": mean, "std": std},
            start="scratch",
            epoch=5,
            val_accuracy=float(right[role == "val"].mean()),
        )
        metrics = {
            "model": name,
            "size": "small",
            "protocol": "writer",
            "val": {"accuracy": float(right[role == "val"].mean()), "n": int((role == "val").sum())},
            "test": {"accuracy": float(right[role == "test"].mean()), "n": int((role == "test").sum())},
        }
        (root / "metrics" / name).mkdir(parents=True)
        (root / "metrics" / name / "small.json").write_text(json.dumps(metrics))
    files = root / "files"
    files.mkdir()
    test_rows = np.flatnonzero(role == "test")[::9]
    for row in test_rows:
        # As users bring them: dark ink on white, and the same glyph shifted on a larger page.
        ink = Image.fromarray(255 - native[row])
        (files / f"{row}_inverted.png").write_bytes(png_bytes(ink))
        page = Image.new("L", (96, 96), 255)
        page.paste(ink, (24, 8))
        (files / f"{row}_shifted.png").write_bytes(png_bytes(page))
    return {"root": root, "labels": labels, "role": role, "arrays": arrays, "files": files}


def export_args(root: Path, out: Path, *ensemble_runs: str) -> list[str]:
    return [
        "--metrics",
        *(str(root / "metrics" / name / "small.json") for name in RUNS),
        "--models-dir",
        str(root / "models"),
        "--images",
        *(str(p) for p in sorted((root / "data").rglob("images_*.npy"))),
        "--index",
        str(root / "data" / "index.csv"),
        "--split-dir",
        str(root / "splits"),
        "--out-dir",
        str(out),
        "--ensemble",
        *ensemble_runs,
    ]


def run_probabilities(root: Path, name: str, arrays: dict, ids: np.ndarray) -> np.ndarray:
    """One run alone, on its own framing's array: its softmax for `ids`."""
    model, meta = checkpoint.load_model(root / "models" / name / "small" / "checkpoint.pt")
    images = np.load(arrays[RUNS[name]])[ids]
    with torch.inference_mode():
        logits = model(normalize(images, meta["normalize"]["mean"], meta["normalize"]["std"]))
    return torch.softmax(logits, dim=1).numpy()


@pytest.fixture(scope="module")
def exported(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "export"
    assert export_main(export_args(pair["root"], out, "cnn/small", "cnn_box/small")) == 0
    return out


def test_the_export_scores_the_mean_of_the_two_runs(pair, exported):
    parity = json.loads((exported / "parity.json").read_text())
    assert parity["passed"] and parity["model"] == ensemble.NAME and parity["top1_disagree"] == 0
    assert [m["run"] for m in parity["members"]] == ["cnn/small", "cnn_box/small"]
    assert [m["framing"] for m in parity["members"]] == ["cell", "ink_box"]
    for role in ("val", "test"):
        ids = np.flatnonzero(pair["role"] == role)
        mean = sum(run_probabilities(pair["root"], name, pair["arrays"], ids) for name in RUNS) / 2
        expected = float((mean.argmax(1) == pair["labels"][ids]).mean())
        assert parity[f"{role}_accuracy"] == pytest.approx(expected) and parity[f"{role}_images"] == ids.size
    card = (exported / "model_card.md").read_text(encoding="utf-8")
    assert "## Ensemble" in card and "`cnn/small` + `cnn_box/small`" in card and "| `cnn_box/small` | ink_box |" in card
    assert f"{100 * parity['test_accuracy']:.2f} %" in card
    # the ensemble's own Wilson interval, from its counts (scipy's, not the project's formula)
    n = parity["test_images"]
    low, high = binomtest(round(parity["test_accuracy"] * n), n).proportion_ci(method="wilson")
    assert f"| test | {100 * parity['test_accuracy']:.2f} % | {100 * low:.2f} % – {100 * high:.2f} % |" in card


def test_both_files_carry_one_input_channel_per_framing(exported):
    proto = onnx.load(str(exported / "model.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["hccr.framings"] == "cell,ink_box"
    assert proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 2
    record = checkpoint.load(exported / "checkpoint.pt")
    assert record["model"] == ensemble.NAME and ensemble.member_framings(record) == ["cell", "ink_box"]
    assert sorted({key.split(".")[1] for key in record["state_dict"]}) == ["0", "1"]


@pytest.mark.parametrize("kind", ["model.onnx", "checkpoint.pt"])
def test_predict_gives_the_mean_of_each_run_on_its_own_framing(pair, exported, kind):
    exported_predictor = load_predictor(exported / kind)
    assert exported_predictor.framing_names == ("cell", "ink_box")
    runs = {name: load_predictor(pair["root"] / "models" / name / "small" / "checkpoint.pt") for name in RUNS}
    assert runs["cnn_box"].framing_names == ("ink_box",)  # read from the run's own checkpoint
    files = sorted(pair["files"].iterdir())
    got = list(predict_sources(exported_predictor, iter_sources([str(p) for p in files]), top_k=15))
    assert len(got) == len(files) > 10 and not any(p.error for p in got)
    for path, prediction in zip(files, got, strict=True):
        image = Image.open(path)
        alone = []
        for name, predictor in runs.items():
            glyph = canonical_glyph(image, path.name, FRAMINGS[RUNS[name]])
            alone.append(predictor.class_probabilities(glyph_to_size(glyph, 32)[None])[0])
        mean = (alone[0] + alone[1]) / 2
        scored = dict(prediction.top)
        probs = np.array([scored[c] for c in CHINESE_MNIST.characters])
        np.testing.assert_allclose(probs, mean, atol=1e-5)


def test_the_ink_box_member_sees_a_shifted_file_as_the_original(pair, exported):
    # The ink-box framing is what makes the pair shift-proof: both files give it the same input.
    predictor = load_predictor(exported / "checkpoint.pt")
    for inverted in sorted(pair["files"].glob("*_inverted.png"))[:5]:
        shifted = inverted.with_name(inverted.name.replace("inverted", "shifted"))
        _, a = predictor.prepare(inverted.read_bytes(), inverted.name)
        _, b = predictor.prepare(shifted.read_bytes(), shifted.name)
        assert a.shape == b.shape == (2, 32, 32)
        # Real scans keep some paper noise, which the white page lacks: a few grey levels at most
        # (measured: max 4), where the cell framing shrinks the glyph (measured: max 72-112).
        box, cell = (np.abs(a[m].astype(int) - b[m].astype(int)).max() for m in (1, 0))
        assert box <= 8 < 40 < cell, (inverted.name, box, cell)


def test_serve_shows_the_pair_and_what_each_member_reads(pair, exported):
    from starlette.testclient import TestClient

    from hccr.serving.serve_app import create_app
    from hccr.serving.serve_facts import model_facts

    predictor = load_predictor(exported / "model.onnx")
    client = TestClient(create_app(predictor, facts=model_facts(predictor, metrics_root=pair["root"] / "metrics")))
    facts = client.get("/api/model").json()
    parity = json.loads((exported / "parity.json").read_text())
    assert facts["model"] == ensemble.NAME and facts["framings"] == ["cell", "ink_box"]
    assert facts["test_accuracy"] == pytest.approx(parity["test_accuracy"])
    assert facts["metrics_file"] == str(exported / "parity.json")
    shifted = sorted(pair["files"].glob("*_shifted.png"))[0]
    answer = client.post("/api/predict", content=shifted.read_bytes(), headers={"Content-Type": "image/png"}).json()
    assert answer["framings"] == ["cell", "ink_box"]  # the page shows one panel per framing then
    panels = Image.open(io.BytesIO(base64.b64decode(answer["model_input"].split(",", 1)[1])))
    assert panels.size == (64, 32)  # the two framings side by side, at the model's 32 px


def test_metadata_that_disagrees_with_the_graph_is_refused(exported, tmp_path):
    proto = onnx.load(str(exported / "model.onnx"))
    for entry in proto.metadata_props:
        if entry.key == "hccr.framings":
            entry.value = "cell"  # one framing named, two channels read
    onnx.save(proto, str(tmp_path / "edited.onnx"))
    with pytest.raises(HccrError, match=r"2 input channel\(s\) but its metadata names 1 framing"):
        load_predictor(tmp_path / "edited.onnx")


def test_an_ensemble_of_one_run_is_refused(pair, tmp_path, capsys):
    assert export_main(export_args(pair["root"], tmp_path / "out", "cnn/small")) == 2
    assert "export.ensemble lists one run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_runs_with_other_input_sizes_are_refused(pair, tmp_path, capsys):
    root = pair["root"]
    other = tmp_path / "models"
    for name in RUNS:
        record = checkpoint.load(root / "models" / name / "small" / "checkpoint.pt")
        (other / name / "small").mkdir(parents=True)
        if name == "cnn_box":
            record["input_size"], record["config"] = 64, {**record["config"], "input_size": 64}
        torch.save(record, other / name / "small" / "checkpoint.pt")
    args = export_args(root, tmp_path / "out", "cnn/small", "cnn_box/small")
    args[args.index("--models-dir") + 1] = str(other)
    assert export_main(args) == 2
    err = capsys.readouterr().err
    assert "input_size" in err and "cnn_box" in err and not (tmp_path / "out").exists()


def test_a_missing_ink_box_array_is_named(pair, tmp_path, capsys):
    args = export_args(pair["root"], tmp_path / "out", "cnn/small", "cnn_box/small")
    start = args.index("--images") + 1
    args[start : args.index("--index")] = [str(pair["root"] / "data" / "images_32.npy")]
    assert export_main(args) == 2
    assert "ink_box/images_32.npy" in capsys.readouterr().err


def test_an_ensemble_config_is_checked_before_it_builds(tmp_path):
    config = {"members": [{"model": "cnn", "config": member_config("cell"), "normalize": {"mean": 0.1, "std": 0.2}}]}
    with pytest.raises(Exception, match="2 to 8"):
        ensemble.build({**config, "normalize": {"mean": 0.1, "std": 0.2}}, "none", 15)
    nested = {"model": ensemble.NAME, "config": {}, "normalize": {"mean": 0.1, "std": 0.2}}
    with pytest.raises(Exception, match="cannot hold another ensemble"):
        ensemble.build({"members": [config["members"][0], nested], "normalize": {"mean": 0.1, "std": 0.2}}, "none", 15)
    with pytest.raises(DataError, match="unknown framing"):
        load_predictor_with_framing(tmp_path, "sideways")


def load_predictor_with_framing(tmp_path: Path, framing: str):
    model = create("cnn", TINY_CNN, "none", num_classes=15)[0]
    path = save_untrained(
        tmp_path / "odd.pt", model, "cnn", {**TINY_CNN, "framing": framing}, {"mean": 0.1, "std": 0.2}
    )
    return load_predictor(path)
