"""The study's 95 % intervals for mean scores, chosen to fit the data (the method is recorded).

- 0/1 scores from independent contexts: Wilson score interval.
- Samples that share a context (the queries of one kv_recall / fact_update / multi_session
  episode) or continuous scores: percentile bootstrap over contexts (whole contexts resampled, the
  mean taken over their pooled samples), seeded so a re-render gives the same numbers.
- Fewer than 2 samples: no interval.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

Z95 = 1.959963984540054
N_BOOT = 2000
#: the study's target: a headline cell's 95 % half-width at most this
TARGET_HALF_WIDTH = 0.10


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cluster_bootstrap(scores: Sequence[float], clusters: Sequence[Any], seed: int = 0, n_boot: int = N_BOOT) -> tuple[float, float]:
    s = np.asarray(scores, dtype=float)
    _, idx = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    k = int(idx.max()) + 1
    sums, counts = np.bincount(idx, weights=s, minlength=k), np.bincount(idx, minlength=k).astype(float)
    draw = np.random.default_rng(seed).integers(0, k, size=(n_boot, k))  # [n_boot, k] cluster picks
    means = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def mean_interval(scores: Sequence[float], clusters: Sequence[Any] | None = None) -> dict[str, Any]:
    """{mean, n, n_contexts, ci_low, ci_high, ci_method, half_width}; nulls come with ``ci_reason``."""
    pairs = [(float(s), c) for s, c in zip(scores, clusters if clusters is not None else range(len(scores)))
             if s is not None and not math.isnan(float(s))]
    n = len(pairs)
    out: dict[str, Any] = {"mean": None, "n": n, "n_contexts": len({str(c) for _, c in pairs}), "ci_low": None, "ci_high": None,
                           "ci_method": None, "half_width": None}
    if n == 0:
        return out | {"ci_reason": "no scored samples"}
    vals = [s for s, _ in pairs]
    out["mean"] = sum(vals) / n
    if n < 2:
        return out | {"ci_reason": "fewer than 2 samples"}
    binary = all(v in (0.0, 1.0) for v in vals)
    if binary and out["n_contexts"] == n:
        lo, hi = wilson(sum(vals), n)
        out["ci_method"] = "wilson"
    elif out["n_contexts"] < 2:
        return out | {"ci_reason": "all samples share one context"}
    else:
        lo, hi = cluster_bootstrap(vals, [c for _, c in pairs])
        out["ci_method"] = "cluster_bootstrap"
    return out | {"ci_low": lo, "ci_high": hi, "half_width": (hi - lo) / 2}
