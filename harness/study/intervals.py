"""The study's 95 % intervals for mean scores: the harness's own (``harness.stats``), so a cell of
the study and a run's summary.json agree for the same samples (the method is recorded).

- 0/1 scores from independent contexts: Wilson score interval.
- 0/1 scores where questions share a context (kv_recall, fact_update, multi_session episodes):
  Wilson on the effective n (the design effect of the contexts).
- Continuous scores: percentile bootstrap, over whole contexts where samples share them, seeded so
  a re-render gives the same numbers; one with no spread falls back to Wilson on the number of
  contexts (never a zero-width interval).
- Fewer than 2 samples, or one context: no interval.
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
    """{mean, n, n_contexts, ci_low, ci_high, ci_method, half_width}; nulls come with ``ci_reason``.
    The interval is the harness's own (``harness.stats.accuracy_interval``), so the study and every
    run's summary.json agree on the method for the same samples."""
    pairs = [(float(s), c) for s, c in zip(scores, clusters if clusters is not None else range(len(scores)))
             if s is not None and not math.isnan(float(s))]
    n = len(pairs)
    out: dict[str, Any] = {"mean": None, "n": n, "n_contexts": len({str(c) for _, c in pairs}), "ci_low": None, "ci_high": None,
                           "ci_method": None, "half_width": None}
    if n == 0:
        return out | {"ci_reason": "no scored samples"}
    acc = stats.accuracy_interval([s for s, _ in pairs], [str(c) for _, c in pairs])
    out["mean"] = acc["mean"]
    if acc["ci95"] is None:
        return out | {"ci_reason": acc["ci95_reason"]}
    lo, hi = acc["ci95"]
    return out | {"ci_low": lo, "ci_high": hi, "ci_method": acc["ci_method"], "half_width": (hi - lo) / 2}
