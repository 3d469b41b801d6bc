"""Batch augmentation for handwritten characters: a small random affine per image.

One sampling grid + `grid_sample` per batch, on the batch's own device. Rotation, translation,
scale and shear only: characters are never flipped (a mirrored glyph is another shape).
Pixels that come from outside the image are filled with 0 (black, the background), so call
it on images in pixel/255 units, before normalisation. Random parameters come from a CPU
`torch.Generator`, so the same seed gives the same batch on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from hccr.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = False
    degrees: float = 0.0  # rotation in [-degrees, +degrees]
    translate: float = 0.0  # shift in [-translate, +translate] x image size, per axis
    scale: float = 0.0  # zoom factor in [1 - scale, 1 + scale]
    shear: float = 0.0  # horizontal shear angle in [-shear, +shear] degrees

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any] | None, key: str = "augment") -> "AugmentConfig":
        """Build from the params `augment:` block; unknown keys and bad ranges name the key."""
        if spec is None:
            return cls()
        if isinstance(spec, AugmentConfig):
            return spec
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(spec).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ConfigError(f"{key}: unknown key(s) {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {"enabled": bool(spec.get("enabled", False))}
        for name in ("degrees", "translate", "scale", "shear"):
            try:
                value = float(spec.get(name, 0.0))
            except (TypeError, ValueError):
                raise ConfigError(f"{key}.{name}: not a number: {spec.get(name)!r}") from None
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{key}.{name}: must be a finite number >= 0, got {value}")
            values[name] = value
        if values["scale"] >= 1:
            raise ConfigError(f"{key}.scale: must be < 1 (zoom 1 +- scale), got {values['scale']}")
        if values["translate"] >= 1:
            raise ConfigError(f"{key}.translate: must be < 1 (fraction of the image), got {values['translate']}")
        if values["degrees"] > 180 or values["shear"] >= 90:
            raise ConfigError(f"{key}: degrees must be <= 180 and shear < 90")
        return cls(**values)


def affine_matrices(uniform: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Sampling matrices `(B, 2, 3)` for `affine_grid` from uniform draws `(B, 5)` in [0, 1).

    The forward map sends input point p to A p + t with A = rotate . shear . scale; the grid
    needs the inverse (for each output pixel, where to read), i.e. [A^-1 | -A^-1 t].
    Coordinates are affine_grid's normalised [-1, 1], so a shift of f x size is 2 f.
    """
    u = uniform.to(torch.float64) * 2 - 1  # [-1, 1)
    angle = torch.deg2rad(u[:, 0] * cfg.degrees)
    shear = torch.deg2rad(u[:, 1] * cfg.shear)
    zoom = 1 + u[:, 2] * cfg.scale
    shift = torch.stack([u[:, 3], u[:, 4]], dim=1) * (2 * cfg.translate)

    cos, sin = torch.cos(angle), torch.sin(angle)
    rotate = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    one, zero = torch.ones_like(shear), torch.zeros_like(shear)
    shear_m = torch.stack([torch.stack([one, torch.tan(shear)], 1), torch.stack([zero, one], 1)], 1)
    forward = rotate @ shear_m * zoom[:, None, None]
    inverse = torch.linalg.inv(forward)
    offset = -(inverse @ shift[:, :, None])
    return torch.cat([inverse, offset], dim=2)


def random_affine(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply one random affine per image of a float batch `(B, C, H, W)`; black fill."""
    if images.ndim != 4:
        raise ValueError(f"expected a batch (B, C, H, W), got shape {tuple(images.shape)}")
    uniform = torch.rand(images.shape[0], 5, generator=generator)  # CPU draws: device-independent
    theta = affine_matrices(uniform, cfg).to(images.dtype)
    if images.is_cuda:  # pinned + non_blocking: no host sync per batch
        theta = theta.pin_memory().to(images.device, non_blocking=True)
    grid = sampling_grid(theta, images.shape[2], images.shape[3])
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.affine_grid(theta, (B, C, H, W), align_corners=False)`, built by broadcasting.

    affine_grid materialises a (B, H*W, 3) base grid and a batched matmul with K=3, which on
    CPU costs more than grid_sample itself; broadcasting the pixel centres is 2-3x cheaper.
    """
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = ((torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1)[:, None]
    t = theta[:, :, :, None, None]  # (B, 2, 3, 1, 1)
    return (t[:, :, 0] * xs + t[:, :, 1] * ys + t[:, :, 2]).permute(0, 2, 3, 1)
