"""The training knobs of a model's params.yaml block, checked, with defaults for absent keys.

Every error names the key (as `config.<key>`), so a bad sweep override or a typo in
params.yaml is reported before any model is built.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from hccr.training.augment import AugmentConfig
from hccr.errors import ConfigError
from hccr.training.schedules import check_schedule

OPTIMIZERS = ("adam", "adamw", "sgd")
CPU_PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    lr: float
    freeze: str | int  # "all" | "none" | N first backbone layers


@dataclass(frozen=True)
class Settings:
    batch_size: int
    optimizer: str
    weight_decay: float
    momentum: float
    schedule: str
    label_smoothing: float
    early_stopping: bool
    patience: int
    augment: AugmentConfig
    phases: tuple[Phase, ...]
    scratch_phases: tuple[Phase, ...] | None
    compile: bool
    pretrained: str
    cpu_precision: str = "float32"
    resume_every_s: float = 0.0  # write last.pt at most this often (0: every epoch)

    def phases_for(self, start: str) -> tuple[Phase, ...]:
        """A run from scratch uses `scratch_phases`: freezing a random backbone only hurts."""
        if start == "scratch" and self.scratch_phases is not None:
            return self.scratch_phases
        return self.phases


def _number(cfg: Mapping, key: str, default: Any, kind: type, where: str) -> Any:
    value = cfg.get(key, default)
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"config.{where}{key}: expected a number, got {value!r}")
    try:
        converted = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config.{where}{key}: expected {kind.__name__}, got {value!r}") from None
    if kind is int and converted != value:
        raise ConfigError(f"config.{where}{key}: expected an integer, got {value!r}")
    return converted


def _cpu_precision(cfg: Mapping) -> str:
    value = cfg.get("cpu_precision", "float32")
    if value not in CPU_PRECISIONS:
        raise ConfigError(f"config.cpu_precision: {value!r} is not one of {', '.join(CPU_PRECISIONS)}")
    return value


def _phase(spec: Any, key: str) -> Phase:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"config.{key}: expected a mapping with name, epochs, lr, freeze")
    epochs = _number(spec, "epochs", None, int, f"{key}.")
    lr = _number(spec, "lr", None, float, f"{key}.")
    if epochs < 1:
        raise ConfigError(f"config.{key}.epochs: must be >= 1, got {epochs}")
    if not lr > 0:
        raise ConfigError(f"config.{key}.lr: must be > 0, got {lr}")
    freeze = spec.get("freeze", "none")
    if isinstance(freeze, str) and freeze.isdigit():
        freeze = int(freeze)
    if not (freeze in ("all", "none") or (isinstance(freeze, int) and not isinstance(freeze, bool) and freeze >= 0)):
        raise ConfigError(f"config.{key}.freeze: expected all, none or a layer count >= 0, got {freeze!r}")
    return Phase(name=str(spec.get("name", key)), epochs=epochs, lr=lr, freeze=freeze)


def _phases(cfg: Mapping, key: str) -> tuple[Phase, ...] | None:
    if key not in cfg or cfg[key] is None:
        return None
    specs = cfg[key]
    if not isinstance(specs, list) or not specs:
        raise ConfigError(f"config.{key}: expected a non-empty list of phases")
    return tuple(_phase(spec, f"{key}[{i}]") for i, spec in enumerate(specs))


def parse_settings(cfg: Mapping[str, Any]) -> Settings:
    if not isinstance(cfg, Mapping):
        raise ConfigError("config: expected the model's params block (a JSON object)")
    batch_size = _number(cfg, "batch_size", 32, int, "")
    if batch_size < 1:
        raise ConfigError(f"config.batch_size: must be >= 1, got {batch_size}")

    opt = cfg.get("optimizer", {}) or {}
    if isinstance(opt, str):
        opt = {"name": opt}
    name = str(opt.get("name", "adam")).lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f"config.optimizer.name: unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    weight_decay = _number(opt, "weight_decay", 0.0, float, "optimizer.")
    momentum = _number(opt, "momentum", 0.9, float, "optimizer.")

    smoothing = _number(cfg, "label_smoothing", 0.0, float, "")
    if not 0 <= smoothing < 1:
        raise ConfigError(f"config.label_smoothing: must be in [0, 1), got {smoothing}")
    stopping = cfg.get("early_stopping", {}) or {}
    patience = _number(stopping, "patience", 3, int, "early_stopping.")
    if patience < 1:
        raise ConfigError(f"config.early_stopping.patience: must be >= 1, got {patience}")

    resume_every_s = _number(cfg, "resume_every_s", 0.0, float, "")
    if not math.isfinite(resume_every_s) or resume_every_s < 0:
        raise ConfigError(f"config.resume_every_s: must be a number of seconds >= 0, got {resume_every_s}")

    phases = _phases(cfg, "phases")
    if phases is None:
        raise ConfigError("config.phases: missing (a list of {name, epochs, lr, freeze})")
    return Settings(
        batch_size=batch_size,
        optimizer=name,
        weight_decay=weight_decay,
        momentum=momentum,
        schedule=check_schedule(str(cfg.get("schedule", "constant")), "config.schedule"),
        label_smoothing=smoothing,
        early_stopping=bool(stopping.get("enabled", False)),
        patience=patience,
        augment=AugmentConfig.from_dict(cfg.get("augment"), "config.augment"),
        phases=phases,
        scratch_phases=_phases(cfg, "scratch_phases"),
        compile=bool(cfg.get("compile", False)),
        cpu_precision=_cpu_precision(cfg),
        resume_every_s=resume_every_s,
        pretrained=str(cfg.get("pretrained", "auto")),
    )


def build_optimizer(params: list[torch.nn.Parameter], settings: Settings, lr: float, *, fused: bool) -> torch.optim.Optimizer:
    """A fresh optimizer over the trainable parameters (fused kernels on CUDA)."""
    extra = {"fused": True} if fused else {}
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=settings.weight_decay, **extra)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=settings.weight_decay, **extra)
    return torch.optim.SGD(params, lr=lr, momentum=settings.momentum, weight_decay=settings.weight_decay, **extra)
