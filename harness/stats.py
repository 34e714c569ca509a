"""Aggregates: percentiles, CV, and 95% intervals for a mean accuracy that fit the data.

Which interval (``ci_method``, explained in the glossary):

- ``wilson``: 0/1 scores of independent samples. The Wilson score interval; unlike the normal
  approximation or the bootstrap it never has zero width for a finite n (15/15 -> [0.796, 1]).
- ``wilson_clustered``: 0/1 scores where several samples share one context (kv_recall questions
  over one haystack, the questions of one multi_session or fact_update episode). Their answers are
  correlated, so the samples count as fewer independent ones: Wilson with n replaced by the
  effective n = n / design effect. The design effect compares the cluster-robust variance of the
  mean (contexts as the independent units) with the binomial one; it is at least 1 (never narrower
  than treating samples as independent) and, when every score is equal (no variance to compare),
  it is the mean context size, i.e. n_eff = number of contexts (answers within a context assumed
  fully correlated, the conservative end).
- ``bootstrap``: continuous scores (F1, string_match_all fractions) of independent samples:
  percentile bootstrap of the mean, 2000 resamples, seeded.
- ``cluster_bootstrap``: continuous scores with shared contexts: whole contexts are resampled with
  replacement and the mean is taken over the samples of the drawn contexts.
- A bootstrap whose resamples all give the same mean (every context, or every sample, scored
  alike, e.g. two episodes at F1 0.25 each) would claim a zero-width interval. Scores in [0, 1]
  then take the Wilson interval with n = the number of contexts (``wilson_clustered``; for
  independent samples ``wilson`` with n), the conservative end: a mean of scores in [0, 1] varies
  at most like a proportion.
- ``none``: fewer than 2 samples (or fewer than 2 contexts when samples share them): no interval,
  ``ci95`` is null and ``ci95_reason`` says why.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

LEVEL = 0.95
N_BOOT = 2000
#: short names for printed tables; the glossary has the full definitions
LABELS = {"wilson": "Wilson", "wilson_clustered": "clustered Wilson", "bootstrap": "bootstrap",
          "cluster_bootstrap": "cluster bootstrap"}


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


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf((1 + level) / 2)


def wilson(mean: float, n: float, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for a proportion ``mean`` observed over ``n`` (possibly an effective,
    fractional n) independent 0/1 trials."""
    if n <= 0:
        raise ValueError(f"wilson: n must be positive, got {n}")
    z2 = _z(level) ** 2
    centre = (mean + z2 / (2 * n)) / (1 + z2 / n)
    half = math.sqrt(z2) / (1 + z2 / n) * math.sqrt(max(mean * (1 - mean), 0.0) / n + z2 / (4 * n * n))
    # the interval always holds the observed mean; clamping also removes rounding at p = 0 or 1
    return max(0.0, min(mean, centre - half)), min(1.0, max(mean, centre + half))


def bootstrap_ci(values: Sequence[float], level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap of the mean; seeded so the same results give the same interval."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        raise ValueError(f"bootstrap_ci needs at least 2 values, got {x.size}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)  # (n_boot,)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def _by_cluster(values: Sequence[float], clusters: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(sum of scores, number of samples) per context, in first-seen order; each of shape (k,)."""
    index: dict[Any, int] = {}
    sums: list[float] = []
    sizes: list[int] = []
    for v, c in zip(values, clusters):
        if c not in index:
            index[c] = len(sums)
            sums.append(0.0)
            sizes.append(0)
        sums[index[c]] += float(v)
        sizes[index[c]] += 1
    return np.asarray(sums), np.asarray(sizes, dtype=float)


def cluster_bootstrap_ci(values: Sequence[float], clusters: Sequence[Any], level: float = LEVEL, n_boot: int = N_BOOT,
                         seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over contexts: draw k contexts with replacement, take the mean over all
    samples of the drawn contexts (a ratio of sums, so unequal context sizes weigh as in the mean)."""
    sums, sizes = _by_cluster(values, clusters)
    k = sums.size
    if k < 2:
        raise ValueError(f"cluster_bootstrap_ci needs at least 2 contexts, got {k}")
    pick = np.random.default_rng(seed).integers(0, k, size=(n_boot, k))  # (n_boot, k) context indices
    means = sums[pick].sum(axis=1) / sizes[pick].sum(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def effective_n(values: Sequence[float], clusters: Sequence[Any]) -> float:
    """n / design effect for a mean over samples grouped in contexts (needs >= 2 contexts).

    Design effect = cluster-robust variance of the mean / binomial variance p(1-p)/n, with the
    robust variance k/(k-1) * sum_c (y_c - p m_c)^2 / n^2 (y_c: score sum of context c, m_c: its
    size); clipped to >= 1. When p is 0 or 1 neither variance says anything and the design effect is
    taken as the mean context size (n_eff = k, the number of contexts)."""
    sums, sizes = _by_cluster(values, clusters)
    k, n = sums.size, float(sizes.sum())
    p = float(sums.sum()) / n
    binomial = p * (1 - p) / n
    if binomial <= 0:
        return float(k)
    robust = k / (k - 1) * float(((sums - p * sizes) ** 2).sum()) / n**2
    return max(1.0, n / max(1.0, robust / binomial))


def accuracy_interval(scores: Sequence[float], clusters: Sequence[Any] | None = None, binary: bool | None = None,
                      seed: int = 0) -> dict[str, Any]:
    """Mean score with its 95% interval and the method used (see the module docstring).

    ``clusters``: one context key per score (samples with equal keys share a context); None means
    every sample has its own. ``binary``: whether the scores are 0/1; None decides from ``scores``
    (callers pass the whole run's answer so that every slice of a run uses the same kind)."""
    x = [float(s) for s in scores]
    n = len(x)
    if n == 0:
        return {"mean": None, "n": 0, "ci95": None, "ci95_reason": "no scored samples", "ci_method": "none"}
    keys = list(clusters) if clusters is not None else list(range(n))
    if len(keys) != n:
        raise ValueError(f"accuracy_interval: {n} scores but {len(keys)} context keys")
    if binary is None:
        binary = all(v in (0.0, 1.0) for v in x)
    k = len(set(keys))
    out: dict[str, Any] = {"mean": sum(x) / n, "n": n, "n_contexts": k}
    if n < 2:
        return {**out, "ci95": None, "ci95_reason": "n=1: a single sample gives no interval", "ci_method": "none"}
    if k < 2:
        return {**out, "ci95": None, "ci_method": "none",
                "ci95_reason": f"all {n} samples share one context: no interval across contexts"}
    if k == n:
        method = "wilson" if binary else "bootstrap"
        lo, hi = wilson(out["mean"], n) if binary else bootstrap_ci(x, seed=seed)
    elif binary:
        method, out["n_eff"] = "wilson_clustered", effective_n(x, keys)
        lo, hi = wilson(out["mean"], out["n_eff"])
    else:
        method = "cluster_bootstrap"
        lo, hi = cluster_bootstrap_ci(x, keys, seed=seed)
    if hi <= lo and method in ("bootstrap", "cluster_bootstrap") and min(x) >= 0.0 and max(x) <= 1.0:
        # no spread to resample: a zero-width interval would claim certainty the data do not give
        method = "wilson" if k == n else "wilson_clustered"
        if k < n:
            out["n_eff"] = float(k)
        lo, hi = wilson(out["mean"], k)
    return {**out, "ci95": [lo, hi], "ci_method": method}


def sample_count(acc: dict[str, Any]) -> str:
    """"n=15", or "n=12 in 3 contexts" when samples share contexts."""
    n, k = acc.get("n", 0), acc.get("n_contexts")
    if k is not None and k < n:
        return f"n={n} in {k} context{'s' if k != 1 else ''}"
    return f"n={n}"


def interval_label(acc: dict[str, Any]) -> str:
    """"Wilson", "cluster bootstrap", ... for an accuracy entry; "" for one written before
    ``ci_method`` was recorded (those intervals were percentile bootstraps)."""
    return LABELS.get(str(acc.get("ci_method")), "")

