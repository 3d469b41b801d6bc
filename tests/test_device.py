"""hccr.device: precision and memory layout per device."""

import platform

import pytest
import torch

from hccr import device


def test_device_slot_one_rank_per_gpu_or_round_robin_when_ranks_outnumber_gpus():
    assert device.device_slot(1, 2, 4) == (1, 1)
    assert [device.device_slot(r, 4, 1) for r in range(4)] == [(0, 4)] * 4
    assert [device.device_slot(r, 3, 2)[0] for r in range(3)] == [0, 1, 0]
    assert device.device_slot(2, 3, 2)[1] == 2
    with pytest.raises(device.ConfigError, match="LOCAL_RANK 3"):
        device.device_slot(3, 2, 2)
    with pytest.raises(device.ConfigError, match="no CUDA device"):
        device.device_slot(0, 1, 0)


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

    from hccr.training.train import main

    from helpers_train import SIZE, make_data, train_args

    cfg = {
        "arch": "cnn",
        "scheme": "holdout",
        "input_size": SIZE,
        "in_chans": 1,
        "pretrained": "none",
        "width": [8],
        "convs_per_block": 1,
        "dropout": 0.0,
        "batch_size": 64,
        "gpus": 1,
        "cpu_precision": "bfloat16",
        "optimizer": {"name": "adamw", "weight_decay": 0.0},
        "schedule": "constant",
        "label_smoothing": 0.0,
        "early_stopping": {"enabled": False},
        "augment": {"enabled": False},
        "phases": [{"name": "train", "epochs": 1, "lr": 3e-3, "freeze": "none"}],
        "scratch_phases": [{"name": "train", "epochs": 1, "lr": 3e-3, "freeze": "none"}],
    }
    data = make_data(tmp_path / "data", n=150)
    assert main(train_args(data, tmp_path / "run", cfg)) == 0
    summary = json.loads((tmp_path / "run" / "train.json").read_text())
    expected = "bfloat16-autocast" if device.cpu_bf16_supported() else "float32"
    assert summary["precision"] == expected
    assert math.isfinite(summary["final_train_loss"])


# Five epochs of 64 px batches of 128 (the loader's steady state); prints minor page faults.
FAULTS_SCRIPT = """
import resource, sys, numpy as np, torch
from hccr.device import retain_freed_memory
from hccr.training.loader import BatchLoader
if sys.argv[1] == "retain":
    assert retain_freed_memory()
else:  # glibc's static defaults, pinned (its dynamic threshold makes the default vary by run)
    assert retain_freed_memory(mmap_threshold=128 * 1024, trim_threshold=128 * 1024)
torch.set_num_threads(1)
images = np.random.default_rng(0).integers(0, 256, (512, 64, 64), dtype=np.uint8)
augment = dict(enabled=True, degrees=8.0, translate=0.08, scale=0.1, shear=5.0)
loader = BatchLoader(images, np.arange(512), np.zeros(512), 128, shuffle=True, seed=0, mean=0.1, std=0.3,
                     augment_cfg=augment)
for epoch in range(6):
    if epoch == 1:  # after a warm-up epoch
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    loader.set_epoch(epoch)
    for x, _ in loader:
        pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_retain_freed_memory_stops_the_loader_page_faulting():
    import subprocess
    import sys

    def faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, mode], capture_output=True, text=True, check=True)
        return int(done.stdout.strip())

    # With glibc's static defaults (128 KiB mmap and trim thresholds) each batch's multi-MB
    # tensors are mapped, faulted in and given back; retained, the steady state reuses them.
    # (Unpinned, glibc's dynamic threshold gave 257-9,249 faults here from run to run.)
    default, retained = faults("default"), faults("retain")
    assert default > 10_000
    assert retained * 10 < default
