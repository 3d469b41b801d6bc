"""One optimisation step, and the optimizer it uses: shared by the trainer and bench/.

The benchmarks time this very function, so their figures are those of the real training
loop minus its bookkeeping (progress bar, metrics, checkpoints).
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch
from torch import nn

from hccr.config import Optimizer


def build_optimizer(params: list[nn.Parameter], spec: Optimizer, lr: float, *, fused: bool) -> torch.optim.Optimizer:
    """A fresh optimizer over the trainable parameters (fused kernels on CUDA)."""
    extra = {"fused": True} if fused else {}
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=spec.weight_decay, **extra)
    if spec.name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=spec.weight_decay, **extra)
    return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, weight_decay=spec.weight_decay, **extra)


def train_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    autocast: AbstractContextManager | None = None,
    channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (under `autocast`), loss in float32, backward, update; returns (loss, logits).

    Both come back detached and on the device: reading them is the caller's host sync.
    """
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast or contextlib.nullcontext():
        logits = net(x)
    loss = criterion(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()
