"""The model registry: `create(name, cfg, pretrained, num_classes=C) -> (model, start)`.

Every model takes a float `(B, 1, S, S)` batch (normalised grayscale) and returns logits
`(B, C)`, C being the number of classes the data defines (`hccr.classes`); it exposes
`.backbone` (what `apply_freeze` acts on) and `.head`. Adding a model is one REGISTRY entry:
a builder `(cfg, pretrained, num_classes) -> (model, start)` where `pretrained` is
`imagenet | none | auto | <absolute path>`. A params block picks its builder with
`network` (default: the block's own name), so two blocks can build the same network with
different starts (e.g. `efficientnet` from ImageNet and `efficientnet_scratch`).

Train mode: call `model.train()` as usual; frozen BatchNorm layers stay in inference mode
(hccr.models.base.HccrModel.train), as Keras keeps non-trainable BatchNormalization layers.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from hccr.errors import ConfigError
from hccr.models import cnn, efficientnet, ensemble, glyph_start, inception_gru
from hccr.models.base import HccrModel
from hccr.models.freeze import apply_freeze, count_parameters, layer_list, parse_freeze
from hccr.models.pretrained import is_hccr_checkpoint, load_state_dict_file, parse_pretrained, read_weights
from hccr.starts import GLYPH_STARTS

Builder = Callable[[dict, str, int], tuple[nn.Module, str]]

REGISTRY: dict[str, Builder] = {
    "efficientnet": efficientnet.build,
    "inception_gru": inception_gru.build,
    "cnn": cnn.build,
    # Not trainable (the schema's `network` leaves it out): the exported average of trained runs.
    ensemble.NAME: ensemble.build,
}

__all__ = ["REGISTRY", "HccrModel", "create", "apply_freeze", "count_parameters", "layer_list", "parse_freeze"]


def create(
    name: str, cfg: dict, pretrained: str | None = None, *, num_classes: int, start_weights: str | None = None
) -> tuple[nn.Module, str]:
    """Build registry model `name` from its params block `cfg`; return (model, start).

    `pretrained` defaults to `cfg["pretrained"]` (and to `none` when that is absent).
    `start` is what the weights really are: "imagenet", "scratch" or "file:<abs path>";
    `model.start_source` says where they came from (hccr.starts.describe_start).
    `cfg["network"]` names the builder when the block's name is not a registry entry.
    A weights-file path is either a whole-model file (an hccr checkpoint, or a state_dict of
    this model, its keys under `backbone.`/`head.`), loaded strictly into the whole model,
    or, for the timm models, a timm backbone state_dict (as published, classifier included),
    loaded through timm's pretrained machinery.
    `glyphs | imagenet+glyphs | glyphs-excl` load the backbone of the glyph pretraining
    checkpoint `start_weights` strictly, with a fresh head (hccr.models.glyph_start).
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"model.{name}: expected a mapping of settings, got {type(cfg).__name__}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"model.{name}: needs at least 2 classes, got {num_classes!r}")
    network = cfg.get("network", name)
    if network not in REGISTRY:
        where = f"model.{name}.network" if "network" in cfg else "model"
        raise ConfigError(f"{where}: unknown network {network!r}; known networks: {', '.join(sorted(REGISTRY))}")
    requested = cfg.get("pretrained", "none") if pretrained is None else pretrained
    if requested in GLYPH_STARTS:
        return glyph_start.build(REGISTRY[network], name, cfg, requested, start_weights, num_classes)
    kind, path = parse_pretrained(requested)
    if kind == "file":
        data = read_weights(path)
        if is_hccr_checkpoint(data) or any(str(key).startswith("backbone.") for key in data):
            # A whole model (ours): rebuild without weights, then load every parameter.
            model, _ = REGISTRY[network](cfg, "none", num_classes)
            load_state_dict_file(model, path, data)
            model.start_source = ""
            return model, f"file:{path}"
        del data
        return REGISTRY[network](cfg, str(path), num_classes)
    return REGISTRY[network](cfg, kind, num_classes)
