"""Where a training run stands: the typed form of what `last.pt` holds (hccr.training.state).

`RunState` is saved as a plain dict (`to_dict`) so that `torch.load(..., weights_only=True)`
reads it back; the keys are the field names, as `last.pt` files have always had them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn


@dataclass
class Best:
    """The best epoch so far: highest validation accuracy, ties to the lower validation loss."""

    epoch: int = 0
    val_accuracy: float = -1.0
    val_loss: float = math.inf

    def beaten_by(self, val_accuracy: float, val_loss: float) -> bool:
        return (val_accuracy, -val_loss) > (self.val_accuracy, -self.val_loss)


@dataclass
class Patience:
    """Early stopping's counter within a phase: epochs since the validation loss last improved."""

    best_loss: float = math.inf
    bad_epochs: int = 0

    def update(self, val_loss: float) -> int:
        if val_loss < self.best_loss:
            self.best_loss, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs


@dataclass
class RunState:
    fingerprint: dict[str, Any]
    start: str  # what the weights began as: imagenet | scratch | file:PATH
    finished: bool = False
    # Progress: the phase reached, its epochs done, whether it is over, and its optimizer steps
    # (the learning-rate schedule is a function of them).
    phase_index: int = 0
    phase_epoch: int = 0
    phase_done: bool = False
    step: int = 0
    epoch: int = 0  # epochs done over all phases
    model: dict[str, torch.Tensor] | None = None
    optimizer: dict[str, Any] | None = None  # only while a phase is unfinished
    history: list[dict[str, Any]] = field(default_factory=list)  # history.csv rows + phase_index
    best: Best = field(default_factory=Best)
    best_state: dict[str, torch.Tensor] | None = None  # weights of the best epoch
    early_stopping: Patience = field(default_factory=Patience)
    trainable: dict[str, int] = field(default_factory=dict)  # str(phase index) -> trainable parameters
    stopped_early: list[int] = field(default_factory=list)  # phase indices
    seconds_total: float = 0.0
    train_seconds: float = 0.0
    train_images: float = 0.0
    summary: dict[str, Any] | None = None  # train.json, once finished

    def phase_over(self, index: int) -> bool:
        return index < self.phase_index or (index == self.phase_index and self.phase_done)

    def resumes_phase(self, index: int) -> bool:
        """A phase killed halfway: its optimizer state was saved and goes on."""
        return index == self.phase_index and self.optimizer is not None

    def begin_phase(self, index: int) -> None:
        self.phase_index, self.phase_epoch, self.phase_done, self.step = index, 0, False, 0
        self.optimizer = None
        self.early_stopping = Patience()

    def history_rows(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k != "phase_index"} for row in self.history]

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it would deep-copy every weight tensor.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(best=asdict(self.best), early_stopping=asdict(self.early_stopping))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["best"] = Best(**data["best"])
        values["early_stopping"] = Patience(**data["early_stopping"])
        return cls(**values)


def cpu_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of a module's state (saved while training goes on)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def to_cpu(obj: Any) -> Any:
    """Tensors in nested dicts and lists (an optimizer's state) moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    return obj
