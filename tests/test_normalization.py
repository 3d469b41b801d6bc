"""One normalisation for training, evaluation, export and prediction."""

import math

import numpy as np
import pytest
import torch

from hccr.errors import DataError
from hccr.normalization import affine, check_stats, normalize


def test_normalize_is_the_documented_formula():
    pixels = np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    mean, std = 0.173, 0.291
    x = normalize(pixels, mean, std)
    assert x.shape == (3, 1, 8, 8) and x.dtype == torch.float32
    expected = (pixels.astype(np.float64) / 255 - mean) / std
    assert np.allclose(x[:, 0].numpy(), expected, atol=1e-5)
    # the loader's fused form gives the same float32 values
    scale, offset = affine(mean, std)
    assert torch.equal(torch.from_numpy(pixels).float() * scale + offset, x[:, 0])


@pytest.mark.parametrize("mean, std", [(0.1, 0.0), (0.1, -1.0), (math.nan, 0.2), (0.1, math.inf), ("a", 0.2)])
def test_statistics_that_would_give_nan_are_refused_naming_the_file(mean, std):
    with pytest.raises(DataError, match="model.onnx"):
        check_stats(mean, std, "model.onnx")
