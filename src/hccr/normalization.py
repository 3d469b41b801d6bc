"""How a uint8 image becomes model input: ((pixel / 255) - mean) / std, mean and std from the run's training images.

One definition for training (fused into the loader's warp), evaluation, export's parity
check and prediction, computed as pixel * scale + offset everywhere so all four give the
same float32 values.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hccr.errors import DataError


def check_stats(mean: float, std: float, where: str) -> tuple[float, float]:
    """(mean, std) as floats; DataError naming `where` unless both are finite and std > 0."""
    try:
        mean, std = float(mean), float(std)
    except (TypeError, ValueError):
        raise DataError(f"{where}: normalisation mean/std must be numbers, got {mean!r}/{std!r}") from None
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise DataError(f"{where}: normalisation needs a finite mean and std > 0, got mean={mean} std={std}")
    return mean, std


def affine(mean: float, std: float) -> tuple[float, float]:
    """(scale, offset) with pixel * scale + offset == ((pixel / 255) - mean) / std."""
    return 1.0 / (255.0 * std), -mean / std


def normalize(pixels: np.ndarray | torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (B, S, S) -> float32 tensor (B, 1, S, S) on the input's device; an ensemble's
    (B, M, S, S), one channel per member's framing, keeps its shape."""
    if isinstance(pixels, np.ndarray):
        pixels = torch.from_numpy(np.ascontiguousarray(pixels))
    scale, offset = affine(mean, std)
    scaled = pixels.float() * scale + offset
    return scaled.unsqueeze(1) if scaled.dim() == 3 else scaled
