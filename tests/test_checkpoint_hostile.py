"""Issue 12, item 7: checkpoint metadata from elsewhere is checked before anything is built."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hccr.data.layout import CHINESE_MNIST
from hccr.errors import DataError
from hccr.models import checkpoint, create

ROOT = Path(__file__).resolve().parents[1]
CNN = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["model"]["cnn"]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    cfg = copy.deepcopy(CNN) | {"width": [4, 8], "input_size": 32}
    model, start = create("cnn", cfg, num_classes=len(CHINESE_MNIST))
    return checkpoint.save(
        tmp_path_factory.mktemp("ck") / "good.pt",
        classes=CHINESE_MNIST,
        model_name="cnn",
        config=cfg,
        state_dict=model.state_dict(),
        input_size=32,
        normalize={"mean": 0.2, "std": 0.3},
        start=start,
        epoch=1,
        val_accuracy=0.5,
    )


def tampered(good: Path, tmp_path: Path, change) -> Path:
    record = torch.load(good, weights_only=True)
    change(record)
    path = tmp_path / "tampered.pt"
    torch.save(record, path)
    return path


def test_the_untampered_checkpoint_loads(good):
    model, meta = checkpoint.load_model(good)
    assert meta["input_size"] == 32 and sum(p.numel() for p in model.parameters()) > 0


def _set(field, value):
    def change(record):
        target, *rest = field.split(".")
        if rest:
            record[target][rest[0]] = value
        else:
            record[target] = value

    return change


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input_size", 200_000, r"input_size is 200000; expected an integer from 8 to 1024"),
        ("input_size", "64", r"input_size is '64'"),
        ("normalize.std", 0.0, r"normalize.std is 0.0; expected a positive"),
        ("normalize.std", float("nan"), r"normalize.std is nan"),
        ("normalize.mean", float("inf"), r"normalize.mean is inf"),
        ("model", "resnet9000", r"unknown network 'resnet9000'"),
        ("config", [1, 2], r"field config is 'list'"),
        ("epoch", -3, r"field epoch is -3"),
        ("resize_filter", "sinc", r"resize_filter is 'sinc'"),
    ],
)
def test_bad_metadata_is_named(good, tmp_path, field, value, message):
    path = tampered(good, tmp_path, _set(field, value))
    with pytest.raises(DataError, match=message):
        checkpoint.load_model(path)


def test_a_huge_declared_width_is_refused_without_allocating(good, tmp_path):
    path = tampered(good, tmp_path, _set("config.width", [60_000, 60_000]))
    # A 6 GiB address-space limit (torch itself maps ~3): building the declared network would need ~130 GB.
    code = (
        "import resource, sys\n"
        "from hccr.models import checkpoint\n"
        "from hccr.errors import DataError\n"
        "resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n"
        f"try:\n    checkpoint.load_model({str(path)!r})\n"
        "except DataError as exc:\n    print(exc); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "weights do not fit" in proc.stdout and "60000" in proc.stdout


def test_predict_refuses_std_zero_instead_of_printing_nan(good, tmp_path):
    from PIL import Image

    path = tampered(good, tmp_path, _set("normalize.std", 0.0))
    glyph = np.zeros((80, 80), dtype=np.uint8)
    glyph[20:60, 38:42] = 200
    Image.fromarray(glyph).save(tmp_path / "one.png")
    command = [sys.executable, "-m", "hccr.serving.predict", "--model", str(path), str(tmp_path / "one.png")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stdout
    assert "normalize.std" in proc.stderr and "nan" not in proc.stdout.lower()


@pytest.mark.parametrize(
    ("input_size", "mean", "std", "message"),
    [
        (200_000, 0.1, 0.2, "input_size 200000 is outside"),
        (64, 0.1, 0.0, "std > 0"),
        (64, float("nan"), 0.2, "std > 0"),
    ],
)
def test_any_model_file_metadata_is_checked_before_predicting(input_size, mean, std, message):
    from hccr.serving.predict import Predictor

    with pytest.raises(DataError, match=f"model.onnx: .*{message}"):
        Predictor(Path("model.onnx"), input_size, mean, std, CHINESE_MNIST, "bilinear")
