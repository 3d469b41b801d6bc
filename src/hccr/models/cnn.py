"""The baseline: a small VGG-style CNN trained from scratch (about 0.29 M parameters).

`len(width)` blocks of `convs_per_block` x (3x3 conv -> BatchNorm -> ReLU) then 2x2 max-pool;
global average pooling -> Dropout -> Linear(number of classes). There are no ImageNet weights for it.
"""

from __future__ import annotations

import torch
from torch import nn

from hccr.errors import ConfigError
from hccr.models.base import HccrModel
from hccr.models.pretrained import load_state_dict_file, parse_pretrained


class SmallCNN(HccrModel):
    def __init__(self, width: list[int], convs_per_block: int, dropout: float, num_classes: int, in_chans: int = 1):
        super().__init__()
        self.in_chans = in_chans
        blocks = []
        channels = in_chans
        for out in width:
            layers: list[nn.Module] = []
            for _ in range(convs_per_block):
                # No conv bias: the BatchNorm that follows has its own shift.
                layers += [
                    nn.Conv2d(channels, out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                ]
                channels = out
            layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
        self.backbone = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_chans != 1:
            x = x.expand(-1, self.in_chans, -1, -1)
        return self.head(self.backbone(x))


def _widths(cfg: dict) -> list[int]:
    width = cfg.get("width", [32, 64, 128])
    if (
        not isinstance(width, (list, tuple))
        or not width
        or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in width)
    ):
        raise ConfigError(f"model.cnn.width: {width!r} must be a non-empty list of positive channel counts")
    return list(width)


def build(cfg: dict, pretrained: str, num_classes: int) -> tuple[SmallCNN, str]:
    convs = cfg.get("convs_per_block", 2)
    if not isinstance(convs, int) or isinstance(convs, bool) or convs < 1:
        raise ConfigError(f"model.cnn.convs_per_block: {convs!r} must be a positive integer")
    dropout = float(cfg.get("dropout", 0.1))
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.cnn.dropout: {dropout!r} must be in [0, 1)")
    width = _widths(cfg)
    in_chans = int(cfg.get("in_chans", 1))
    size = int(cfg.get("input_size", 64))
    if size < 2 ** len(width):
        raise ConfigError(
            f"model.cnn.input_size: {size} is too small for {len(width)} pooling blocks (needs >= {2 ** len(width)})"
        )
    model = SmallCNN(width, convs, dropout, num_classes, in_chans)
    kind, path = parse_pretrained(pretrained)
    if kind == "imagenet":
        raise ConfigError(
            "model.cnn.pretrained: imagenet — there are no ImageNet weights for the cnn baseline; "
            "use pretrained: none (or auto), or a path to a weights file"
        )
    if kind == "file":
        load_state_dict_file(model, path)
        return model, f"file:{path}"
    return model, "scratch"
