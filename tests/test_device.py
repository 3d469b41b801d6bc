"""hccr.device: precision and memory layout per device."""

import torch

from hccr import device


def test_cpu_defaults_to_float32_with_channels_last():
    runtime = device.setup(threads=1, device="cpu")
    assert runtime.precision == "float32"
    assert runtime.channels_last
    assert runtime.autocast().__class__.__name__ == "nullcontext"


def test_cpu_bfloat16_when_the_processor_has_it(capsys):
    runtime = device.setup(threads=1, device="cpu", cpu_precision="bfloat16")
    if device.cpu_bf16_supported():
        assert runtime.precision == "bfloat16-autocast"
        with runtime.autocast():
            out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
        assert out.dtype == torch.bfloat16
    else:
        assert runtime.precision == "float32"
        assert "no native bf16" in capsys.readouterr().err


def test_a_bf16_run_records_its_precision(tmp_path):
    import json
    import math

    from helpers_train import SIZE, make_data, train_args
    from hccr.train import main

    cfg = {
        "arch": "cnn", "input_size": SIZE, "in_chans": 1, "pretrained": "none", "width": [8],
        "convs_per_block": 1, "dropout": 0.0, "batch_size": 64, "gpus": 1, "cpu_precision": "bfloat16",
        "optimizer": {"name": "adamw", "weight_decay": 0.0}, "schedule": "constant", "label_smoothing": 0.0,
        "early_stopping": {"enabled": False}, "augment": {"enabled": False},
        "phases": [{"name": "train", "epochs": 1, "lr": 3e-3, "freeze": "none"}],
        "scratch_phases": [{"name": "train", "epochs": 1, "lr": 3e-3, "freeze": "none"}],
    }
    data = make_data(tmp_path / "data", n=150)
    assert main(train_args(data, tmp_path / "run", cfg)) == 0
    summary = json.loads((tmp_path / "run" / "train.json").read_text())
    expected = "bfloat16-autocast" if device.cpu_bf16_supported() else "float32"
    assert summary["precision"] == expected
    assert math.isfinite(summary["final_train_loss"])
