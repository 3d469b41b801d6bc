"""hccr.training.loader and hccr.training.augment: batches from the uint8 array, order, shards, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hccr.errors import ConfigError, DataError
from hccr.training.augment import AugmentConfig, affine_matrices, random_affine
from hccr.training.loader import BatchLoader, compute_stats

S = 16


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(7)
    array = rng.integers(0, 256, size=(50, S, S), dtype=np.uint8)
    path = tmp_path / "images.npy"
    np.save(path, array)
    return np.load(path, mmap_mode="r")  # what the trainer reads


def make_loader(images, ids=None, **kw):
    ids = np.arange(len(images)) if ids is None else np.asarray(ids)
    labels = ids % 15
    defaults = dict(shuffle=False, seed=0, mean=0.5, std=0.25)
    defaults.update(kw)
    batch_size = defaults.pop("batch_size", 8)
    return BatchLoader(images, ids, labels, batch_size, **defaults)


def collect_labels(loader):
    """Labels in the order a loader yields them."""
    return torch.cat([y for _, y in loader]).tolist()


def test_batches_have_the_right_shapes_dtypes_and_count(images):
    loader = make_loader(images, batch_size=8)
    batches = list(loader)
    assert len(loader) == len(batches) == 7  # 50 = 6 x 8 + 2
    for x, y in batches[:-1]:
        assert x.shape == (8, 1, S, S) and x.dtype == torch.float32
        assert y.shape == (8,) and y.dtype == torch.int64
    assert batches[-1][0].shape == (2, 1, S, S)
    assert len(make_loader(images, batch_size=8, drop_last=True)) == 6
    assert sum(len(y) for _, y in make_loader(images, batch_size=8, drop_last=True)) == 48


def test_drop_lone_leaves_out_a_last_batch_of_one_image_and_a_different_one_each_epoch(images):
    # 49 images in batches of 8: 6 x 8 + 1. A BatchNorm1d in a head cannot train on that 1.
    ids = np.arange(49)
    loader = make_loader(images, ids, batch_size=8, shuffle=True, seed=3, drop_lone=True)
    left_out = []
    for epoch in range(4):
        loader.set_epoch(epoch)
        sizes = [len(y) for _, y in loader]
        assert sizes == [8] * 6 and len(loader) == 6
        left_out.append(set(range(49)) - set(loader.epoch_indices().tolist()))
    assert all(len(out) == 1 for out in left_out)
    assert len(set().union(*left_out)) > 1  # not always the same image
    # Without it, or when the last batch holds more than one image, nothing is left out.
    assert [len(y) for _, y in make_loader(images, ids, batch_size=8)][-1] == 1
    assert sum(len(y) for _, y in make_loader(images, batch_size=8, drop_lone=True)) == 50


def test_batches_are_the_normalised_rows_in_order(images):
    ids = np.array([3, 1, 40, 7, 22])
    loader = make_loader(images, ids, batch_size=2, mean=0.4, std=0.3)
    x = torch.cat([b for b, _ in loader])
    y = torch.cat([t for _, t in loader])
    expected = (np.asarray(images[ids], dtype=np.float64) / 255 - 0.4) / 0.3
    np.testing.assert_allclose(x[:, 0].numpy(), expected, rtol=0, atol=1e-5)
    assert y.tolist() == (ids % 15).tolist()


def test_compute_stats_matches_numpy(images):
    ids = np.array([0, 5, 9, 31])
    mean, std = compute_stats(images, ids)
    pixels = np.asarray(images[ids], dtype=np.float64) / 255
    assert mean == pytest.approx(pixels.mean(), abs=1e-12)
    assert std == pytest.approx(pixels.std(), abs=1e-12)
    constant = np.zeros((3, S, S), dtype=np.uint8)
    assert compute_stats(constant) == (0.0, 1.0)  # never a zero std


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch(images):
    a = make_loader(images, shuffle=True, seed=11)
    b = make_loader(images, shuffle=True, seed=11)
    a.set_epoch(3)
    b.set_epoch(3)
    first = collect_labels(a)
    assert first == collect_labels(b)
    assert sorted(first) == sorted((np.arange(50) % 15).tolist())
    order3 = a.epoch_indices(3).tolist()
    assert sorted(order3) == list(range(50))
    assert order3 != a.epoch_indices(4).tolist()
    assert order3 != make_loader(images, shuffle=True, seed=12).epoch_indices(3).tolist()
    a.set_epoch(4)
    a.set_epoch(3)  # replaying an epoch (resume) gives the same order again
    assert a.epoch_indices().tolist() == order3


@pytest.mark.parametrize("n", [48, 50, 7])
def test_shards_have_equal_sizes_and_cover_everything(images, n):
    world = 3
    loaders = [
        make_loader(images, np.arange(n), shuffle=True, seed=5, rank=r, world_size=world, batch_size=4)
        for r in range(world)
    ]
    shards = [ld.epoch_indices(2).tolist() for ld in loaders]
    assert len({len(s) for s in shards}) == 1  # DDP needs the same number of batches per rank
    assert len({len(ld) for ld in loaders}) == 1
    flat = [i for s in shards for i in s]
    assert set(flat) == set(range(n))
    assert len(flat) - n == (-n) % world  # only the wrap-around padding repeats


def test_evaluation_shards_are_disjoint_without_padding(images):
    world = 3
    shards = [
        make_loader(images, rank=r, world_size=world, even_shards=False).epoch_indices(0).tolist() for r in range(world)
    ]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(50))


def test_drop_last_shards_are_disjoint(images):
    world = 4
    shards = [
        set(
            make_loader(images, shuffle=True, seed=1, rank=r, world_size=world, drop_last=True, batch_size=1)
            .epoch_indices(0)
            .tolist()
        )
        for r in range(world)
    ]
    for i in range(world):
        for j in range(i + 1, world):
            assert not shards[i] & shards[j]
    assert sum(len(s) for s in shards) == 48


AUG = AugmentConfig(enabled=True, degrees=10.0, translate=0.1, scale=0.1, shear=5.0)


def test_augmentation_keeps_shape_and_is_seeded():
    x = torch.rand(6, 1, 24, 24)
    one = random_affine(x, AUG, torch.Generator().manual_seed(3))
    two = random_affine(x, AUG, torch.Generator().manual_seed(3))
    other = random_affine(x, AUG, torch.Generator().manual_seed(4))
    assert one.shape == x.shape and one.dtype == x.dtype
    assert torch.equal(one, two)
    assert not torch.allclose(one, other)
    assert not torch.allclose(one, x)


def test_augmentation_with_zero_parameters_is_the_identity():
    x = torch.rand(4, 1, 20, 20)
    zero = AugmentConfig(enabled=True)
    out = random_affine(x, zero, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x, rtol=0, atol=1e-5)
    theta = affine_matrices(torch.rand(4, 5), zero)
    torch.testing.assert_close(theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=theta.dtype).expand(4, 2, 3))


def test_augmentation_never_mirrors_a_character():
    # An asymmetric glyph (a bar on the left): the augmented image must stay closer to the
    # original than to its mirror image.
    x = torch.zeros(32, 1, 24, 24)
    x[:, :, 4:20, 3:8] = 1.0
    out = random_affine(x, AUG, torch.Generator().manual_seed(0))
    same = (out * x).flatten(1).sum(1)
    mirrored = (out * x.flip(-1)).flatten(1).sum(1)
    assert bool((same > mirrored).all())


def test_translation_fills_with_black_in_normalised_units(tmp_path):
    white = np.full((8, S, S), 255, dtype=np.uint8)
    cfg = {"enabled": True, "degrees": 0.0, "translate": 0.3, "scale": 0.0, "shear": 0.0}
    loader = BatchLoader(white, np.arange(8), np.zeros(8), 8, shuffle=False, seed=2, mean=0.2, std=0.5, augment_cfg=cfg)
    x, _ = next(iter(loader))
    black = (0 - 0.2) / 0.5
    white_value = (1 - 0.2) / 0.5
    assert x.min().item() == pytest.approx(black, abs=1e-6)
    assert x.max().item() == pytest.approx(white_value, abs=1e-6)
    # The same epoch replays the same augmentation; another epoch draws a new one.
    again, _ = next(iter(loader))
    assert torch.equal(x, again)
    loader.set_epoch(1)
    assert not torch.equal(x, next(iter(loader))[0])


def test_augment_config_rejects_unknown_keys_and_bad_ranges():
    with pytest.raises(ConfigError, match="flip"):
        AugmentConfig.from_dict({"enabled": True, "flip": True})
    with pytest.raises(ConfigError, match="scale"):
        AugmentConfig.from_dict({"scale": 1.5})
    with pytest.raises(ConfigError, match="degrees"):
        AugmentConfig.from_dict({"degrees": -1})
    assert AugmentConfig.from_dict(None) == AugmentConfig()


def test_loader_rejects_bad_ids(images):
    with pytest.raises(DataError, match="out of range"):
        make_loader(images, [0, 50])
    with pytest.raises(DataError, match="no images"):
        make_loader(images, [])


def test_sampling_grid_equals_affine_grid():
    import torch.nn.functional as F

    from hccr.training.augment import sampling_grid

    theta = torch.randn(5, 2, 3, dtype=torch.float64)
    expected = F.affine_grid(theta, [5, 1, 7, 9], align_corners=False)
    assert torch.allclose(sampling_grid(theta, 7, 9), expected, atol=1e-12)


def test_warp_batch_is_the_same_in_any_block_size_and_from_uint8():
    from hccr.training.augment import draw_matrices, warp_batch

    pixels = torch.randint(0, 256, (10, 1, 16, 16), dtype=torch.uint8)
    theta = draw_matrices(10, AUG, torch.Generator().manual_seed(5))
    whole = warp_batch(pixels, theta, block=10)
    assert whole.dtype == torch.float32 and whole.shape == pixels.shape
    for block in (1, 3, 4):
        torch.testing.assert_close(warp_batch(pixels, theta, block=block), whole, rtol=0, atol=0)
    # uint8 in equals float in; the fused scale/offset equals normalising afterwards.
    torch.testing.assert_close(warp_batch(pixels.float(), theta), whole)
    fused = warp_batch(pixels, theta, scale=0.5, offset=-2.0, block=3)
    torch.testing.assert_close(fused, whole * 0.5 - 2.0, rtol=0, atol=1e-5)


def test_warp_batch_rejects_mismatched_matrices():
    from hccr.training.augment import warp_batch

    with pytest.raises(ValueError, match="theta"):
        warp_batch(torch.zeros(4, 1, 8, 8), torch.zeros(3, 2, 3))


def test_loader_batches_equal_a_per_batch_warp_of_the_same_draws(images):
    # The loader draws a whole epoch's matrices at once; batch k must be the warp of rows k of
    # that draw, normalised, whatever the batch split.
    from hccr.training.augment import draw_matrices, warp_batch
    from hccr.training.loader import epoch_seed

    cfg = dict(enabled=True, degrees=10.0, translate=0.1, scale=0.1, shear=5.0)
    loader = make_loader(images, shuffle=True, seed=4, batch_size=7, augment_cfg=cfg)
    loader.set_epoch(2)
    got = torch.cat([x for x, _ in loader])
    order = loader.epoch_indices(2)
    theta = draw_matrices(
        len(order), AugmentConfig.from_dict(cfg), torch.Generator().manual_seed(epoch_seed(4, 2, 0, 1))
    )
    pixels = torch.from_numpy(np.asarray(images))[order.numpy()].unsqueeze(1)
    expected = (warp_batch(pixels, theta) / 255 - loader.mean) / loader.std
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
