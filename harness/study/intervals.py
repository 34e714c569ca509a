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

from harness import stats

N_BOOT = stats.N_BOOT
#: the study's target: a headline cell's 95 % half-width at most this
TARGET_HALF_WIDTH = 0.10


def wilson(successes: float, n: int) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (``harness.stats.wilson``)."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    return stats.wilson(successes / n, n)


def cluster_bootstrap(scores: Sequence[float], clusters: Sequence[Any], seed: int = 0, n_boot: int = N_BOOT) -> tuple[float, float]:
    """Percentile bootstrap over contexts (``harness.stats.cluster_bootstrap_ci``); contexts compared as text."""
    return stats.cluster_bootstrap_ci(scores, [str(c) for c in clusters], n_boot=n_boot, seed=seed)


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
