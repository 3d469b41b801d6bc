"""BatchLoader over a memory map it does not copy: the same batches as the in-memory copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hccr.training import loader as loader_module
from hccr.training.loader import BatchLoader


@pytest.fixture
def memmap(tmp_path):
    rng = np.random.default_rng(0)
    array = np.lib.format.open_memmap(tmp_path / "images.npy", mode="w+", dtype=np.uint8, shape=(300, 16, 16))
    array[:] = rng.integers(0, 256, size=array.shape, dtype=np.uint8)
    array.flush()
    return np.load(tmp_path / "images.npy", mmap_mode="r")


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("world_size", [1, 2])
def test_memmap_batches_equal_in_memory_batches(memmap, augment, world_size):
    ids = np.random.default_rng(1).choice(300, size=123, replace=False)
    labels = ids % 7
    common = dict(
        batch_size=10,
        shuffle=True,
        seed=4,
        mean=0.5,
        std=0.25,
        world_size=world_size,
        rank=world_size - 1,
        augment_cfg={"enabled": augment},
    )
    copied = BatchLoader(memmap, ids, labels, in_memory=True, **common)
    mapped = BatchLoader(memmap, ids, labels, in_memory=False, **common)
    assert mapped.source is memmap and mapped.data is None and copied.source is None
    for epoch in (0, 3):
        copied.set_epoch(epoch)
        mapped.set_epoch(epoch)
        batches = list(zip(copied, mapped, strict=False))
        assert len(batches) == len(copied) == len(mapped)
        for (xa, ya), (xb, yb) in batches:
            torch.testing.assert_close(xa, xb, rtol=0, atol=0)
            assert torch.equal(ya, yb)
    # The very pixels: batch rows are the images of the ids the epoch order names.
    mapped.set_epoch(0)
    order = mapped.epoch_indices(0)[:10].numpy()
    x, _ = next(iter(BatchLoader(memmap, ids, labels, in_memory=False, **{**common, "augment_cfg": None})))
    expected = (memmap[ids[order]].astype(np.float32) / 255 - 0.5) / 0.25
    np.testing.assert_allclose(x[:, 0].numpy(), expected, atol=1e-5)


def test_large_selection_is_not_copied(memmap, monkeypatch):
    monkeypatch.setattr(loader_module, "host_available_bytes", lambda: 4 * 123 * 16 * 16 - 1)
    big = BatchLoader(memmap, np.arange(123), np.zeros(123), batch_size=8, shuffle=False, seed=0, mean=0, std=1)
    assert big.source is memmap
    monkeypatch.setattr(loader_module, "host_available_bytes", lambda: 4 * 123 * 16 * 16)
    small = BatchLoader(memmap, np.arange(123), np.zeros(123), batch_size=8, shuffle=False, seed=0, mean=0, std=1)
    assert small.source is None and small.data.shape == (123, 16, 16)


def test_host_available_memory_counts_reclaimable_cache():
    total = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    free = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemFree:"))
    available = loader_module.host_available_bytes()
    assert 0 < available <= total and available >= free * 0.5  # MemAvailable, not just free pages
