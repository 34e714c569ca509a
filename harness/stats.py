"""Aggregates: percentiles, CV and a seeded bootstrap confidence interval."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def describe(values: Sequence[float]) -> dict[str, float | int]:
    x = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], dtype=float)
    if x.size == 0:
        return {"n": 0}
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    p = np.percentile(x, [50, 90, 95, 99])
    return {
        "n": int(x.size), "mean": mean, "p50": float(p[0]), "p90": float(p[1]), "p95": float(p[2]), "p99": float(p[3]),
        "std": std, "cv_pct": (100 * std / mean) if mean else 0.0, "min": float(x.min()), "max": float(x.max()),
    }


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap of the mean; seeded so the same results give the same interval."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)
