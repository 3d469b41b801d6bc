"""Learning-rate schedules, as a pure function of the optimizer step within a phase.

Keeping the schedule a function of (step, phase) instead of a stateful torch scheduler makes
resuming trivial: the only state is the step counter stored in `last.pt`.

- `constant`: lr.
- `inverse_time`: Keras' legacy per-step decay as the study used it,
  lr_t = lr / (1 + decay * t) with decay = lr / epochs, t = optimizer steps taken so far in
  the phase (the first step uses lr).
- `cosine`: lr * (1 + cos(pi * t / T)) / 2 over the phase's T steps (reaches ~0 at the end).
"""

from __future__ import annotations

import math

from hccr.errors import ConfigError

SCHEDULES = ("constant", "inverse_time", "cosine")


def learning_rate(name: str, base_lr: float, step: int, *, epochs: int, total_steps: int) -> float:
    """The learning rate for optimizer step `step` (0-based, counted within the phase)."""
    if name == "constant":
        return base_lr
    if name == "inverse_time":
        decay = base_lr / epochs
        return base_lr / (1.0 + decay * step)
    if name == "cosine":
        progress = min(step, total_steps) / max(total_steps, 1)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ConfigError(f"schedule: unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
