"""hccr.models.checkpoint: weights-only round trips, wrapper prefixes, clear errors, atomic writes."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from hccr.data.layout import CHINESE_MNIST
from hccr.errors import DataError
from hccr.models import checkpoint, create

from helpers_data import CHARACTERS

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["model"]


def trained_cnn(**overrides):
    torch.manual_seed(1)
    cfg = copy.deepcopy(PARAMS["cnn"])
    cfg.update(overrides)
    model, start = create("cnn", cfg, num_classes=15)
    # Move the BatchNorm statistics off their defaults so the round trip has to carry them.
    model.train()
    model(torch.randn(8, 1, 32, 32) * 2 + 0.5)
    return model.eval(), cfg, start


def save_cnn(path, model, cfg, start, **extra):
    return checkpoint.save(
        path,
        classes=CHINESE_MNIST,
        model_name="cnn",
        config=cfg,
        state_dict=model.state_dict(),
        input_size=32,
        normalize={"mean": np.float32(0.17), "std": 0.31},
        start=start,
        epoch=4,
        val_accuracy=0.875,
        **extra,
    )


def test_round_trip_is_weights_only_and_reproduces_outputs(tmp_path):
    model, cfg, start = trained_cnn()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    nn.functional.cross_entropy(model(torch.randn(4, 1, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    optimizer.step()
    model.eval()
    path = save_cnn(
        tmp_path / "run" / "checkpoint.pt",
        model,
        cfg,
        start,
        optimizer=optimizer.state_dict(),
        history=[(1, 0.5), (2, np.float64(0.75))],
        images=tmp_path,
    )

    raw = torch.load(path, weights_only=True)  # would raise on anything but plain types
    assert raw["format"] == 1 and raw["model"] == "cnn" and raw["characters"] == CHARACTERS
    assert raw["normalize"] == {"mean": pytest.approx(0.17), "std": 0.31}
    assert raw["history"] == [[1, 0.5], [2, 0.75]] and raw["images"] == str(tmp_path)
    assert raw["optimizer"]["state"]  # optimizer state survives for resuming

    rebuilt, meta = checkpoint.load_model(path)
    assert not rebuilt.training
    assert "state_dict" not in meta and meta["epoch"] == 4 and meta["val_accuracy"] == 0.875
    assert meta["config"] == cfg and meta["start"] == start and meta["input_size"] == 32
    x = torch.randn(5, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp files left


def test_wrapper_prefixes_are_stripped(tmp_path):
    model, cfg, start = trained_cnn()

    class Wrapper(nn.Module):  # what DistributedDataParallel's state_dict looks like
        def __init__(self, module):
            super().__init__()
            self.module = module

    wrapped = Wrapper(model).state_dict()
    assert all(key.startswith("module.") for key in wrapped)
    path = checkpoint.save(
        tmp_path / "c.pt",
        classes=CHINESE_MNIST,
        model_name="cnn",
        config=cfg,
        state_dict=wrapped,
        input_size=32,
        normalize={"mean": 0.1, "std": 0.2},
        start=start,
        epoch=1,
        val_accuracy=0.5,
    )
    rebuilt, _ = checkpoint.load_model(path)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_efficientnet_round_trip(tmp_path):
    cfg = copy.deepcopy(PARAMS["efficientnet"])
    cfg["input_size"] = 32
    model, start = create("efficientnet", cfg, "none", num_classes=15)
    model.eval()
    path = checkpoint.save(
        tmp_path / "e.pt",
        classes=CHINESE_MNIST,
        model_name="efficientnet",
        config=cfg,
        state_dict=model.state_dict(),
        input_size=32,
        normalize={"mean": 0.1, "std": 0.2},
        start=start,
        epoch=0,
        val_accuracy=0.0,
    )
    rebuilt, meta = checkpoint.load_model(path)
    assert meta["start"] == "scratch"
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_unstorable_field_leaves_the_old_checkpoint_alone(tmp_path):
    model, cfg, start = trained_cnn()
    path = save_cnn(tmp_path / "c.pt", model, cfg, start)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="extra_thing"):
        save_cnn(path, model, cfg, start, extra_thing=object())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.pt"):
        checkpoint.load(tmp_path / "nope.pt")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    model, cfg, start = trained_cnn()
    path = save_cnn(tmp_path / "c.pt", model, cfg, start)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated, as by a full disk
    with pytest.raises(DataError, match=r"c\.pt.*cannot be read"):
        checkpoint.load_model(path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(DataError, match="garbage.pt"):
        checkpoint.load(garbage)


class Payload:
    """Anything pickled that is not plain data must not be unpickled."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": Payload()}, path, pickle_module=pickle)
    with pytest.raises(DataError, match="evil.pt"):
        checkpoint.load(path)


def test_not_a_checkpoint_or_unknown_format(tmp_path):
    plain = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    with pytest.raises(DataError, match="weights.pt.*not an hccr checkpoint"):
        checkpoint.load(plain)
    model, cfg, start = trained_cnn()
    path = save_cnn(tmp_path / "c.pt", model, cfg, start)
    record = torch.load(path, weights_only=True)
    record["format"] = 2
    torch.save(record, path)
    with pytest.raises(DataError, match="format 2"):
        checkpoint.load(path)


def test_weights_that_do_not_fit_the_config(tmp_path):
    model, cfg, start = trained_cnn()
    path = save_cnn(tmp_path / "c.pt", model, cfg, start)
    record = torch.load(path, weights_only=True)
    record["config"]["width"] = [16, 32, 64]
    torch.save(record, path)
    with pytest.raises(DataError, match=r"c\.pt.*do not fit"):
        checkpoint.load_model(path)


def test_a_block_that_builds_another_network_loads_back(tmp_path):
    # The quick profile's efficientnet_scratch block builds the efficientnet network (`network:`).
    model, cfg, start = trained_cnn()
    cfg = dict(cfg, network="cnn")
    path = checkpoint.save(
        tmp_path / "c.pt",
        classes=CHINESE_MNIST,
        model_name="cnn_twin",
        config=cfg,
        state_dict=model.state_dict(),
        input_size=32,
        normalize={"mean": 0.17, "std": 0.31},
        start=start,
        epoch=1,
        val_accuracy=0.5,
    )
    loaded, meta = checkpoint.load_model(path)
    assert meta["model"] == "cnn_twin"
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(loaded(x), model(x))
