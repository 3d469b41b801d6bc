"""hccr.training.train end to end on tiny data: outputs, phases, schedules, early stopping, reruns."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from hccr import models
from hccr.models import checkpoint
from hccr.training.history import COLUMNS
from hccr.training.run_state import Best, RunState
from hccr.training.schedules import learning_rate
from hccr.training.train import main, seed_everything

from helpers_train import SIZE, cnn_config, make_data, train_args

CNN = cnn_config()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


def with_phases(cfg, phases, **changes):
    cfg = copy.deepcopy(cfg)
    cfg["phases"] = phases
    cfg["scratch_phases"] = phases
    cfg.update(changes)
    return cfg


def test_run_writes_checkpoint_history_and_summary(data, tmp_path):
    out = tmp_path / "run"
    cfg = with_phases(CNN, [{"name": "train", "epochs": 3, "lr": 3e-3, "freeze": "none"}])
    assert main(train_args(data, out, cfg)) == 0
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "last.pt", "history.csv", "train.json"}

    history = pd.read_csv(out / "history.csv")
    assert tuple(history.columns) == COLUMNS
    assert history["epoch"].tolist() == [1, 2, 3]
    assert (history["images_per_second"] > 0).all() and (history["seconds"] > 0).all()
    assert history["val_accuracy"].between(0, 1).all()

    summary = json.loads((out / "train.json").read_text())
    best = history.sort_values(["val_accuracy", "val_loss"], ascending=[False, True]).iloc[0]
    assert summary["best_epoch"] == int(best["epoch"])
    assert summary["best_val_accuracy"] == pytest.approx(best["val_accuracy"])
    assert summary["final_val_loss"] == pytest.approx(history["val_loss"].iloc[-1])
    assert summary["final_train_accuracy"] == pytest.approx(history["train_accuracy"].iloc[-1])
    assert summary["start"] == "scratch" and summary["pretrained"] == "none"
    assert summary["epochs"] == 3 and summary["stopped_early"] is False
    assert summary["world_size"] == 1 and summary["device"] == "cpu" and summary["precision"] == "float32"
    total = summary["parameters"]["total"]
    assert summary["parameters"]["trainable_per_phase"] == [{"phase": "train", "trainable": total}]
    assert summary["n_train"] == 210 and summary["n_val"] == 60  # the test role is never used
    assert summary["images_per_second"] > 0 and summary["seconds_total"] > 0

    model, meta = checkpoint.load_model(out / "checkpoint.pt")
    assert meta["epoch"] == summary["best_epoch"] and meta["start"] == "scratch"
    assert meta["input_size"] == SIZE
    mean, std = meta["normalize"]["mean"], meta["normalize"]["std"]
    pixels = np.load(data / "images.npy")[(np.arange(300) // 15) % 10 < 7] / 255
    assert mean == pytest.approx(pixels.mean()) and std == pytest.approx(pixels.std())
    with torch.no_grad():
        assert model(torch.zeros(2, 1, SIZE, SIZE)).shape == (2, 15)


def test_training_learns_the_toy_task(data, tmp_path):
    cfg = with_phases(
        CNN, [{"name": "train", "epochs": 8, "lr": 1e-2, "freeze": "none"}], width=[16, 32], augment={"enabled": False}
    )
    out = tmp_path / "run"
    assert main(train_args(data, out, cfg)) == 0
    history = pd.read_csv(out / "history.csv")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert history["val_accuracy"].max() > 3 / 15  # chance is 1/15


def test_phases_switch_the_trainable_parameters(data, tmp_path):
    phases = [
        {"name": "head", "epochs": 1, "lr": 1e-3, "freeze": "all"},
        {"name": "finetune", "epochs": 1, "lr": 1e-4, "freeze": "none"},
    ]
    cfg = with_phases(CNN, phases)
    out = tmp_path / "two"
    assert main(train_args(data, out, cfg, extra=["--pretrained", "none"])) == 0
    summary = json.loads((out / "train.json").read_text())
    per_phase = summary["parameters"]["trainable_per_phase"]
    model, _ = models.create("cnn", cfg, "none", num_classes=15)
    head_only = sum(p.numel() for p in model.head.parameters())
    assert per_phase == [
        {"phase": "head", "trainable": head_only},
        {"phase": "finetune", "trainable": summary["parameters"]["total"]},
    ]
    assert pd.read_csv(out / "history.csv")["phase"].tolist() == ["head", "finetune"]

    # A frozen phase leaves the whole backbone (weights and BatchNorm statistics) untouched.
    frozen = with_phases(CNN, phases[:1])
    out = tmp_path / "frozen"
    assert main(train_args(data, out, frozen, seed=3)) == 0
    seed_everything(3)
    initial, _ = models.create("cnn", frozen, "none", num_classes=15)
    trained = torch.load(out / "last.pt", weights_only=True)["model"]
    backbone = {k: v for k, v in initial.state_dict().items() if k.startswith("backbone.")}
    assert backbone
    for key, value in backbone.items():
        assert torch.equal(trained[key], value), key
    assert any(not torch.equal(trained[k], v) for k, v in initial.state_dict().items() if k.startswith("head."))


def test_inverse_time_schedule_matches_the_keras_formula(data, tmp_path):
    lr, epochs = 1e-2, 3
    assert learning_rate("inverse_time", lr, 0, epochs=epochs, total_steps=30) == lr
    for step in (1, 7, 29):
        assert learning_rate("inverse_time", lr, step, epochs=epochs, total_steps=30) == pytest.approx(
            lr / (1 + (lr / epochs) * step), rel=1e-12
        )
    assert learning_rate("cosine", lr, 0, epochs=epochs, total_steps=30) == lr
    assert learning_rate("cosine", lr, 15, epochs=epochs, total_steps=30) == pytest.approx(lr / 2)
    assert learning_rate("constant", lr, 29, epochs=epochs, total_steps=30) == lr

    # End to end: the lr logged for an epoch is the one its last optimizer step used.
    cfg = with_phases(
        CNN,
        [{"name": "train", "epochs": epochs, "lr": lr, "freeze": "none"}],
        schedule="inverse_time",
        optimizer={"name": "adam"},
        batch_size=50,
    )
    out = tmp_path / "run"
    assert main(train_args(data, out, cfg)) == 0
    steps = math.ceil(210 / 50)
    logged = pd.read_csv(out / "history.csv")["lr"].tolist()
    expected = [lr / (1 + (lr / epochs) * (steps * e - 1)) for e in range(1, epochs + 1)]
    assert logged == pytest.approx(expected, rel=1e-12)


def test_early_stopping_stops_where_the_validation_loss_says(tmp_path):
    data = make_data(tmp_path / "noise", learnable=False)  # nothing to learn: val loss soon rises
    phases = [{"name": "train", "epochs": 8, "lr": 2e-2, "freeze": "none"}]
    free = with_phases(CNN, phases, schedule="constant")
    assert main(train_args(data, tmp_path / "free", free)) == 0
    losses = pd.read_csv(tmp_path / "free" / "history.csv")["val_loss"].tolist()
    patience = 2
    best, bad, expected = math.inf, 0, len(losses)
    for epoch, loss in enumerate(losses, 1):
        best, bad = (loss, 0) if loss < best else (best, bad + 1)
        if bad >= patience:
            expected = epoch
            break
    assert expected < len(losses), "this setting should overfit within 8 epochs"

    stopped = with_phases(CNN, phases, schedule="constant", early_stopping={"enabled": True, "patience": patience})
    assert main(train_args(data, tmp_path / "stop", stopped)) == 0
    history = pd.read_csv(tmp_path / "stop" / "history.csv")
    assert history["epoch"].tolist() == list(range(1, expected + 1))
    assert history["val_loss"].tolist() == pytest.approx(losses[:expected], abs=1e-6)
    summary = json.loads((tmp_path / "stop" / "train.json").read_text())
    assert summary["stopped_early"] is True and summary["epochs"] == expected


def test_scratch_runs_use_scratch_phases(data, tmp_path):
    cfg = copy.deepcopy(CNN)
    cfg["phases"] = [{"name": "head", "epochs": 1, "lr": 1e-3, "freeze": "all"}]
    cfg["scratch_phases"] = [{"name": "scratch", "epochs": 2, "lr": 1e-3, "freeze": "none"}]
    out = tmp_path / "scratch"
    assert main(train_args(data, out, cfg)) == 0
    assert pd.read_csv(out / "history.csv")["phase"].tolist() == ["scratch", "scratch"]
    assert json.loads((out / "train.json").read_text())["start"] == "scratch"

    # Starting from a file is not scratch: the study's `phases` apply.
    weights = out / "checkpoint.pt"
    out2 = tmp_path / "from-file"
    assert main(train_args(data, out2, cfg, extra=["--pretrained", str(weights)])) == 0
    assert pd.read_csv(out2 / "history.csv")["phase"].tolist() == ["head"]
    summary = json.loads((out2 / "train.json").read_text())
    assert summary["start"].startswith("file:") and summary["pretrained"] == str(weights)


def test_finished_run_rerun_changes_nothing_and_restores_deleted_outputs(data, tmp_path):
    out = tmp_path / "run"
    cfg = with_phases(CNN, [{"name": "train", "epochs": 1, "lr": 1e-3, "freeze": "none"}])
    assert main(train_args(data, out, cfg)) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    history = (out / "history.csv").read_text()
    assert main(train_args(data, out, cfg)) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps

    (out / "history.csv").unlink()
    (out / "checkpoint.pt").unlink()
    assert main(train_args(data, out, cfg)) == 0
    assert (out / "history.csv").read_text() == history
    _, meta = checkpoint.load_model(out / "checkpoint.pt")
    assert meta["epoch"] == 1

    # Other settings: the old state is not reused, the run starts afresh.
    changed = with_phases(CNN, [{"name": "train", "epochs": 2, "lr": 1e-3, "freeze": "none"}])
    assert main(train_args(data, out, changed)) == 0
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [1, 2]


def test_bad_inputs_give_clear_errors_and_no_output(data, tmp_path, capsys):
    out = tmp_path / "run"
    bad_split = tmp_path / "split.csv"
    frame = pd.read_csv(data / "split.csv")
    frame.loc[5, "role"] = "training"
    frame.to_csv(bad_split, index=False)
    args = train_args(data, out, CNN)
    args[args.index("--split") + 1] = str(bad_split)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(bad_split) in err and "row 7" in err and "training" in err

    bad_cfg = copy.deepcopy(CNN)
    bad_cfg["optimizer"] = {"name": "lbfgs"}
    assert main(train_args(data, out, bad_cfg)) == 2
    assert "model.cnn.optimizer.name" in capsys.readouterr().err

    # The block is checked by the params schema, as Snakemake checks it: no phase of 0 epochs.
    no_epochs = with_phases(CNN, [{"name": "t", "epochs": 0, "lr": 1e-3, "freeze": "none"}])
    assert main(train_args(data, out, no_epochs)) == 2
    assert "params: model.cnn.phases.0.epochs: 0 is less than the minimum of 1" in capsys.readouterr().err

    wrong_size = copy.deepcopy(CNN)
    wrong_size["input_size"] = 64
    assert main(train_args(data, out, wrong_size)) == 2
    assert "input_size" in capsys.readouterr().err
    assert not out.exists()


def test_views_are_required_checked_and_recorded(data, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = copy.deepcopy(CNN)
    cfg["augment"] = {**cfg["augment"], "views": 0.5}
    assert main(train_args(data, out, cfg)) == 2
    assert "model.cnn.augment.views is 0.5: pass --views" in capsys.readouterr().err
    short = tmp_path / "short.npy"
    np.save(short, np.load(data / "images.npy")[:10])
    assert main(train_args(data, out, cfg, extra=["--views", str(short)])) == 2
    assert f"{short}: 10 rows but the index has" in capsys.readouterr().err
    assert not out.exists()

    views = tmp_path / "views.npy"
    np.save(views, 255 - np.load(data / "images.npy"))  # any row-aligned array of the same shape
    assert main(train_args(data, out, cfg, extra=["--views", str(views)])) == 0
    summary = json.loads((out / "train.json").read_text())
    assert summary["views"] == {"share": 0.5, "file": str(views)}


def test_run_state_round_trips_through_its_saved_dict():
    state = RunState(fingerprint={"seed": 1}, start="scratch")
    state.begin_phase(1)
    state.history.append({"epoch": 1, "phase": "a", "phase_index": 1})
    assert state.best.beaten_by(0.5, 2.0)
    state.best = Best(epoch=1, val_accuracy=0.5, val_loss=2.0)
    assert not state.best.beaten_by(0.5, 2.5) and state.best.beaten_by(0.5, 1.5)
    assert [state.early_stopping.update(loss) for loss in (3.0, 3.0, 2.0, 2.5)] == [0, 1, 0, 1]
    saved = {"format": 1, **state.to_dict()}
    assert isinstance(saved["best"], dict) and isinstance(saved["early_stopping"], dict)
    again = RunState.from_dict(saved)
    assert again == state
    assert again.phase_over(0) and not again.phase_over(1) and not again.resumes_phase(1)
    assert again.history_rows() == [{"epoch": 1, "phase": "a"}]


def test_a_batchnorm_head_trains_when_the_last_batch_would_hold_one_image(data, tmp_path):
    # 210 training images in batches of 209 leave one over: a BatchNorm1d cannot train on one
    # image (PyTorch raises), so the loader leaves it out and a different one sits out each epoch.
    n_train = int((pd.read_csv(data / "split.csv")["role"] == "train").sum())
    cfg = with_phases(
        CNN,
        [{"name": "train", "epochs": 2, "lr": 1e-3, "freeze": "none"}],
        network="efficientnet",
        arch="tf_efficientnet_lite0",
        in_chans=1,
        drop_path_rate=0.0,
        head={"hidden": 16, "dropout": 0.0, "batchnorm": True},
        batch_size=n_train - 1,
    )
    del cfg["width"], cfg["convs_per_block"], cfg["dropout"]
    out = tmp_path / "run"
    assert main(train_args(data, out, cfg, model="efficientnet")) == 0
    summary = json.loads((out / "train.json").read_text())
    assert summary["epochs"] == 2 and summary["n_train"] == n_train
    kinds = [type(m).__name__ for m in checkpoint.load_model(out / "checkpoint.pt")[0].head]
    assert "BatchNorm1d" in kinds
