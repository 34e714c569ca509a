"""Every number the report shows across runs, cut from the tidy frame (``harness.reporting.tidy``).

The leaderboards, report cards, figures and their CSVs are group-bys over the frame's rows (one row
per sample × repetition × run), using the same statistics as a run's own summary
(``harness.stats.describe`` for metrics, ``harness.stats.accuracy_interval`` for accuracy), so a
number is computed in one place and the pages agree with summary.json. Figure data come out as tidy
frames (one row per plotted point, named columns) that are drawn and saved as CSV unchanged.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Sequence

import pandas as pd

from harness.stats import accuracy_interval, describe

#: where the peak device bytes come from, best first (see "peak_device_bytes" in the glossary)
PEAK_SOURCES = [
    ("gpu_process_peak_bytes", "GPU"),
    ("gpu_peak_reserved_bytes", "GPU"),
    ("gpu_peak_allocated_bytes", "GPU"),
    ("host_peak_rss_bytes", "host RSS"),
]
Val = tuple[Any, "str | None"]  # (value, reason when the value is None)


def _null(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def scored(df: pd.DataFrame) -> pd.DataFrame:
    """Repetition-0 rows with a score: accuracy counts every sample once, like the run's summary."""
    return df[(df["rep"] == 0) & df["score"].notna()]


class RunStats:
    """The aggregates of one run, from its rows of the frame (the ``run_id`` group)."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self.rows = rows
        self.has_samples = bool(rows["sample_id"].notna().any())

    def values(self, metric: str) -> pd.Series:
        if metric == "itl_s":  # one value per generated-token gap: the frame's per-sample gaps, exploded
            return pd.to_numeric(self.rows["itl_gaps_s"].explode(), errors="coerce").dropna()
        return pd.to_numeric(self.rows[metric], errors="coerce").dropna()

    def describe(self, metric: str) -> tuple[dict[str, Any], str | None]:
        """Every statistic of a metric over the run's samples (harness.stats.describe), or {"n": 0}
        and the reason it is missing."""
        if metric not in self.rows and not (metric == "itl_s" and "itl_gaps_s" in self.rows):
            return {"n": 0}, f"{metric} not recorded in this run"
        d = describe(self.values(metric).tolist())
        if d["n"]:
            return d, None
        col = metric + "_reason"
        reasons = sorted(set(self.rows[col].dropna())) if col in self.rows else []
        if reasons:
            return d, "; ".join(map(str, reasons))
        if not self.has_samples:
            return d, "no samples"
        return d, ("every answer had fewer than 2 tokens, so there are no inter-token gaps" if metric == "itl_s"
                   else "no sample recorded a value")

    def stat(self, metric: str, stat: str = "mean") -> Val:
        """One aggregate of a metric over the run's samples, with the reason when it is missing."""
        d, reason = self.describe(metric)
        return d.get(stat), reason

    def load(self, key: str) -> Val:
        """A value of the load phase (summary.json "load")."""
        first = self.rows.iloc[0]
        v = first.get(f"load.{key}")
        if not _null(v):
            return (v.item() if hasattr(v, "item") else v), None  # numpy scalar -> int/float/str, formatted like the file's value
        loaded = any(not _null(first[c]) for c in self.rows.columns if c.startswith("load."))
        reason = first.get(f"load.{key}_reason")
        return None, reason if not _null(reason) else (f"{key} not recorded" if loaded else "run failed before loading finished")

    @cached_property  # a bootstrap for continuous scores: computed once per run, read by ranking, cells and figures
    def accuracy(self) -> dict[str, Any]:
        first = scored(self.rows)
        return accuracy_interval(first["score"].tolist(), first["context_id"].tolist())

    def peak_device(self) -> tuple[Any, str | None, str | None, str | None]:
        """(bytes, label, source metric, reason): the run's peak over load, ingest and answer."""
        reasons = []
        for name, label in PEAK_SOURCES:
            vals = [v for v in (self.stat(name, "max")[0], self.load(name)[0]) if v is not None]
            if vals:
                return max(vals), label, name, None
            reasons.append(self.stat(name, "max")[1] or self.load(name)[1])
        return None, None, None, "; ".join(sorted({r for r in reasons if r}))


def per_run(df: pd.DataFrame) -> dict[str, RunStats]:
    """{run_id: RunStats} for every run in the frame."""
    return {rid: RunStats(g) for rid, g in df.groupby("run_id", sort=False)}


def ranked(run_ids: Sequence[str], stats: dict[str, RunStats], names: dict[str, tuple[str, str]]) -> list[str]:
    """Leaderboard order: accuracy high to low, then mean state bytes low to high, then method,
    model and id (``names``: run_id -> (method, model))."""
    def key(rid: str) -> tuple:
        acc = stats[rid].accuracy.get("mean")
        state = stats[rid].stat("state_bytes")[0]
        return (acc is None, -(acc or 0.0), state is None, state or 0.0, *names[rid], rid)

    return sorted(run_ids, key=key)


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[bool]:
    """Which points no other point beats on both axes (lower x, higher y); of equal points, one."""
    on = [False] * len(x)
    best = -math.inf
    for i in sorted(range(len(x)), key=lambda i: (x[i], -y[i])):
        if y[i] > best:
            on[i], best = True, y[i]
    return on


def by_length(df: pd.DataFrame, metric: str, stat: str = "mean") -> pd.DataFrame:
    """run_id, context_length, value: one aggregate per run and context length (accuracy over
    repetition 0, like the summary; every repetition otherwise)."""
    rows = scored(df) if metric == "score" else df
    rows = rows[rows["context_length"].notna() & rows[metric].notna()] if {"context_length", metric} <= set(rows) else rows.iloc[0:0]
    out = [{"run_id": rid, "context_length": float(n), "value": float(describe(g[metric].tolist())[stat])}
           for (rid, n), g in rows.groupby(["run_id", "context_length"], sort=True)]
    return pd.DataFrame(out, columns=["run_id", "context_length", "value"])


def grid(df: pd.DataFrame) -> pd.DataFrame:
    """run_id, depth, context_length, accuracy, n: mean score per cell (repetition 0), for runs whose
    every sample has both slices (needle-style tasks)."""
    cols = ["run_id", "depth", "context_length", "accuracy", "n"]
    if not {"depth", "context_length"} <= set(df):
        return pd.DataFrame(columns=cols)
    full = df.groupby("run_id")[["depth", "context_length"]].transform(lambda s: s.notna().all()).all(axis=1)
    rows = scored(df[full])
    g = rows.groupby(["run_id", "depth", "context_length"], sort=True)["score"].agg(["mean", "size"]).reset_index()
    return g.rename(columns={"mean": "accuracy", "size": "n"})[cols]


def itl_gaps(df: pd.DataFrame) -> pd.DataFrame:
    """run_id, sample_id, rep, itl_s: one row per generated-token gap."""
    cols = ["run_id", "sample_id", "rep", "itl_s"]
    if "itl_gaps_s" not in df:
        return pd.DataFrame(columns=cols)
    out = df[["run_id", "sample_id", "rep", "itl_gaps_s"]].explode("itl_gaps_s").rename(columns={"itl_gaps_s": "itl_s"})
    out["itl_s"] = pd.to_numeric(out["itl_s"], errors="coerce")
    return out[out["itl_s"].notna()].reset_index(drop=True)[cols]
