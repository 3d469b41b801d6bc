"""McNemar's exact test for two classifiers (or two inputs) scored on the same items.

Only the discordant pairs carry information: b = items right under A and wrong under B,
c = wrong under A and right under B. Under the null hypothesis (same accuracy) each
discordant pair falls either way with probability 1/2, so b ~ Binomial(b + c, 1/2); the
two-sided p-value is scipy's exact binomial test (`scipy.stats.binomtest`; for p = 1/2 it
doubles the smaller tail, capped at 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest


@dataclass(frozen=True)
class McNemar:
    n: int  # paired items
    only_a: int  # right under A, wrong under B
    only_b: int  # wrong under A, right under B
    p_value: float

    def as_dict(self) -> dict:
        return asdict(self)


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n trials of probability 1/2."""
    return 1.0 if n == 0 else float(binomtest(k, n, 0.5).pvalue)


def mcnemar_exact(correct_a, correct_b) -> McNemar:
    """McNemar's exact test on two boolean arrays of per-item correctness (same items, same order)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired results must be two 1-D arrays of one length, got {a.shape} and {b.shape}")
    only_a = int(np.count_nonzero(a & ~b))
    only_b = int(np.count_nonzero(~a & b))
    return McNemar(int(a.size), only_a, only_b, binomial_two_sided(only_a, only_a + only_b))
