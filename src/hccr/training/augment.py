"""Batch augmentation for handwritten characters: a small random affine per image.

One sampling grid + `grid_sample` per batch, on the batch's own device. Rotation, translation,
scale and shear only: characters are never flipped (a mirrored glyph is another shape).
Pixels that come from outside the image are filled with 0 (black, the background), so call
it on images in pixel/255 units, before normalisation. Random parameters come from a CPU
`torch.Generator`, so the same seed gives the same batch on any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The `augment:` settings live with the other typed params (checked by the schema).
from hccr.config import AugmentConfig

__all__ = ["AugmentConfig", "affine_matrices", "draw_matrices", "random_affine", "warp_batch"]


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


def draw_matrices(
    count: int,
    cfg: AugmentConfig,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Sampling matrices `(count, 2, 3)` for `count` random affines, on `device`.

    The uniform draws come from a CPU generator, so a seed gives the same matrices on any
    device; they are copied over pinned and non-blocking (no host sync).
    """
    uniform = torch.rand(count, 5, generator=generator)
    theta = affine_matrices(uniform, cfg).to(dtype)
    if torch.device(device).type == "cuda":
        theta = theta.pin_memory().to(device, non_blocking=True)
    return theta


def random_affine(
    images: torch.Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator,
    *,
    scale: float = 1.0,
    offset: float = 0.0,
    block: int | None = None,
) -> torch.Tensor:
    """One random affine per image of a batch `(B, C, H, W)`, black fill; see `warp_batch`."""
    if images.ndim != 4:
        raise ValueError(f"expected a batch (B, C, H, W), got shape {tuple(images.shape)}")
    dtype = images.dtype if images.is_floating_point() else torch.float32
    theta = draw_matrices(images.shape[0], cfg, generator, dtype, images.device)
    return warp_batch(images, theta, scale=scale, offset=offset, block=block)


# On CPU a batch is warped in blocks of this many images, so that each block's grid, float
# copy and output stay in cache: 32 beat 8, 16, 64 and 128 on 128 x 64 px batches.
CPU_BLOCK = 32


def warp_batch(
    images: torch.Tensor,
    theta: torch.Tensor,
    *,
    scale: float = 1.0,
    offset: float = 0.0,
    block: int | None = None,
) -> torch.Tensor:
    """Bilinear warp of `(B, C, H, W)` images through sampling matrices `(B, 2, 3)`; float out.

    Returns `offset + scale * warped`: the loader's normalisation, fused into the same pass
    (warping is linear and the fill is 0, so normalising after warping is exact). uint8
    images are converted block by block. `block` warps that many images at a time (default:
    `CPU_BLOCK` on CPU, all at once on a GPU); the result does not depend on it.
    """
    if images.ndim != 4 or theta.shape != (images.shape[0], 2, 3):
        raise ValueError(
            f"expected images (B, C, H, W) and theta (B, 2, 3), got {tuple(images.shape)} and {tuple(theta.shape)}"
        )
    dtype = theta.dtype
    if block is None:
        block = images.shape[0] if images.is_cuda else CPU_BLOCK
    per_column, per_row = grid_terms(theta, images.shape[2], images.shape[3])
    out = torch.empty(images.shape, dtype=dtype, device=images.device)
    shift = torch.tensor(offset, dtype=dtype, device=images.device)
    for start in range(0, images.shape[0], block):
        rows = slice(start, start + block)
        grid = combine_grid(per_column[rows], per_row[rows])
        warped = F.grid_sample(images[rows].to(dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        torch.add(shift, warped, alpha=scale, out=out[rows])
    return out


def grid_terms(theta: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-column `(B, 2, W)` and per-row `(B, 2, H)` parts of an affine sampling grid."""
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    per_column = theta[:, :, 0, None] * xs
    per_row = theta[:, :, 1, None] * ys + theta[:, :, 2, None]
    return per_column, per_row


def combine_grid(per_column: torch.Tensor, per_row: torch.Tensor) -> torch.Tensor:
    """The `(B, H, W, 2)` grid from its two parts: one broadcast add, laid out `(B, 2, H, W)`
    so that it runs along W (an innermost axis of 2 does not vectorise: 3-10x slower);
    grid_sample reads the permuted view as it is."""
    return (per_column[:, :, None, :] + per_row[:, :, :, None]).permute(0, 2, 3, 1)


def sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.affine_grid(theta, (B, C, H, W), align_corners=False)`, built by broadcasting.

    affine_grid materialises a (B, H*W, 3) base grid and a batched matmul with K=3, which on
    CPU costs more than grid_sample itself.
    """
    return combine_grid(*grid_terms(theta, height, width))
