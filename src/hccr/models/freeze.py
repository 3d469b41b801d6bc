"""Freezing backbones: `freeze: all | none | N`, with N counted in Keras layers.

How layers are counted
----------------------
The study froze "the first 100 of 513 layers" of Keras's EfficientNetV2-S. Keras counts
every layer object, weighted or not: InputLayer, Rescaling, each Conv2D, BatchNormalization,
Activation, Dropout (stochastic depth) and Add, and five per squeeze-excite (pooling,
reshape, reduce conv, expand conv, multiply). So that `freeze: 100` freezes what the study
froze, N counts the timm backbone the same way, walking its modules in definition order
(which is forward order for timm's sequential CNNs):

* the model's Keras preamble: `input` (every model), plus `rescaling` for EfficientNetV2
  (Keras's built-in preprocessing; our normalisation happens before the model);
* a module with its own parameters (Conv, Linear, BatchNorm, timm's BatchNormAct2d): 1;
  a fused activation inside BatchNormAct2d is a child module and counts 1 more, as
  Keras's separate Activation layer does;
* any other leaf module (activation, pooling, DropPath): 1; `nn.Identity` (timm's
  placeholder for an absent part) counts 0, and so does a DropPath in a block without a
  residual (timm builds it but never applies it; Keras has no Dropout there);
* a timm SqueezeExcite: 5, exactly Keras's squeeze/reshape/reduce/expand/excite;
* a block with a residual connection (`has_skip`): 1 more after its layers, Keras's Add.

Keras builds EfficientNetV2 with stochastic depth 0.2 (a Dropout layer in every residual
block but the first, whose rate is 0); the efficientnet model is built with timm's
`drop_path_rate` 0.2 for the same reason, so its DropPath modules line up with Keras's
Dropout layers. With that, timm `tf_efficientnetv2_s` counts 513 layers, as Keras does,
and the first 100 end inside block 4c (timm `blocks.3.2`) after the depthwise
convolution's BatchNorm and activation: the stem, stages 1-3, blocks 4a-4b and the
first half of 4c are frozen; from 4c's squeeze-excite on everything trains (tests check
both facts). Functional operations (timm inception's ReLU and pooling, tensor adds in
the cnn) are not modules and do not count; for those models N is a plain count of the
modules listed here.

Frozen BatchNorm layers stay in inference mode in train mode (see hccr.models.base), as
Keras runs a BatchNormalization layer with `trainable=False`; the unfrozen ones train. (Had
the study called its base model with `training=False`, as Keras's transfer-learning guide
does, every BatchNorm would have stayed in inference mode in phase 2 too; its code is not
published, so this follows the trainable flag.)
"""

from __future__ import annotations

from torch import nn

from hccr.errors import ConfigError

Layer = tuple[str, list[nn.Parameter]]

# Keras's squeeze-excite: GlobalAveragePooling2D, Reshape, Conv2D (reduce), Conv2D (expand), Multiply.
_SQUEEZE_EXCITE_PARTS = ("se_squeeze", "se_reshape", "se_reduce", "se_expand", "se_excite")


def _is_squeeze_excite(module: nn.Module) -> bool:
    return all(hasattr(module, name) for name in ("conv_reduce", "conv_expand", "gate"))


def _walk(module: nn.Module, name: str, out: list[Layer]) -> None:
    if isinstance(module, nn.Identity):
        return
    if _is_squeeze_excite(module):
        params = list(module.parameters())
        # All SE weights go with the reduce/expand convs (Keras's weighted parts).
        reduce = list(module.conv_reduce.parameters())
        expand = [p for p in params if all(p is not q for q in reduce)]
        for part in _SQUEEZE_EXCITE_PARTS:
            weights = reduce if part == "se_reduce" else expand if part == "se_expand" else []
            out.append((f"{name}.{part}", weights))
        return
    own = list(module.parameters(recurse=False))
    children = list(module.named_children())
    if own or not children:
        out.append((name, own))
    skip = getattr(module, "has_skip", None)
    for child_name, child in children:
        if skip is False and type(child).__name__ == "DropPath":
            continue  # timm builds it but applies it only on a residual; Keras has no Dropout there
        _walk(child, f"{name}.{child_name}" if name else child_name, out)
    if getattr(module, "has_skip", False):
        out.append((f"{name}.add", []))


def layer_list(backbone: nn.Module, preamble: tuple[str, ...] = ("input",)) -> list[Layer]:
    """The backbone's layers in Keras order, each with the parameters it owns."""
    layers: list[Layer] = [(name, []) for name in preamble]
    for child_name, child in backbone.named_children():
        _walk(child, child_name, layers)
    if not backbone._modules:  # a bare leaf used as a backbone
        _walk(backbone, "", layers)
    return layers


def parse_freeze(freeze) -> str | int:
    """`all`, `none` or a non-negative int (YAML may give `100` or `"100"`)."""
    if isinstance(freeze, str):
        value = freeze.strip().lower()
        if value in ("all", "none"):
            return value
        if value.isdigit():
            return int(value)
    elif isinstance(freeze, int) and not isinstance(freeze, bool) and freeze >= 0:
        return freeze
    raise ConfigError(f"freeze: {freeze!r} is not one of all | none | a non-negative number of layers")


def apply_freeze(model: nn.Module, freeze) -> tuple[int, int]:
    """Freeze all, none or the first N backbone layers of `model`; return (total, trainable).

    Everything not frozen is made trainable, so phases can go from `all` to `100` to `none`
    in any order. The model's current train/eval mode is re-applied so that newly frozen
    BatchNorm layers switch to inference mode at once.
    """
    mode = parse_freeze(freeze)
    for p in model.parameters():
        p.requires_grad_(True)
    if mode == "all":
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    elif isinstance(mode, int):
        layers = model.freeze_layers()
        if mode > len(layers):
            raise ConfigError(
                f"freeze: {mode} but the {type(model).__name__} backbone has only {len(layers)} layers "
                "(use freeze: all to freeze all of it)"
            )
        for _, params in layers[:mode]:
            for p in params:
                p.requires_grad_(False)
    model.train(model.training)
    return count_parameters(model)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
