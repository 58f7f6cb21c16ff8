"""The statistics every analysis shares: percentile bootstrap intervals over questions.

Questions are the unit of resampling everywhere (seeds are averaged per question first), so a CI says
how much a number would move with other questions of the same kind.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile_ci(replicates: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of a statistic's bootstrap replicates."""
    return float(np.percentile(replicates, 2.5)), float(np.percentile(replicates, 97.5))


def resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` bootstrap resamples of ``n`` questions, as rows of indices (with replacement)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def mean_ci(values: np.ndarray, seed: int, n_boot: int = 2000) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of the mean of per-question values (a paired difference
    when ``values`` are differences)."""
    return percentile_ci(values[resample_indices(len(values), n_boot, seed)].mean(axis=1))
