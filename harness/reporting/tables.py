"""Table columns shared by the pages: which metric and statistic a column shows, and its cells.

A column is a glossary term plus a statistic, so every header links to the term's definition and
the same number is formatted the same way on every page. Cells read a run's aggregates from the
tidy frame (``cuts.RunStats``), never from the run files directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from harness.reporting import cuts
from harness.reporting.cuts import RunStats
from harness.reporting.fmt import Cell, Notes, raw_bytes, unit_of
from harness.reporting.runs import Run
from harness.summary import METRICS


@dataclass(frozen=True)
class Column:
    term: str  # glossary anchor (a metric or report term)
    stat: str  # shown after the term: "mean", "p50", "" ...
    get: Callable[[RunStats, Notes], Cell]

    @property
    def label(self) -> str:
        return f"{self.term} {self.stat}".strip()


def metric(name: str, stat: str = "mean") -> Column:
    def get(run: RunStats, notes: Notes) -> Cell:
        v, reason = run.stat(name, stat)
        return notes.cell(v, {"cv_pct": "%", "n": ""}.get(stat, unit_of(name)), reason)

    return Column(name, stat, get)


def loaded(name: str) -> Column:
    """A value of the load phase (summary.json "load"), e.g. weights_bytes or load_s."""
    def get(run: RunStats, notes: Notes) -> Cell:
        v, reason = run.load(name)
        return notes.cell(v, unit_of(name), reason)

    return Column(name, "", get)


def _accuracy(run: RunStats, notes: Notes) -> Cell:
    return notes.accuracy(run.accuracy)


def _peak(run: RunStats, notes: Notes) -> Cell:
    v, label, source, reason = run.peak_device()
    if v is None:
        return notes.na(reason)
    c = notes.cell(v, "B", suffix=f" ({label})")
    return Cell(c.text, c.sort, f"{raw_bytes(v)}, {source}", None, None)


def _state_max(run: RunStats, notes: Notes) -> Cell:
    v, reason = run.stat("state_bytes", "max")
    return notes.cell(v, "B", reason)


ACCURACY = Column("accuracy", "", _accuracy)
PEAK = Column("peak_device_bytes", "", _peak)

LEADERBOARD = [
    ACCURACY, metric("state_bytes"), PEAK, metric("ttft_query_s", "p50"), metric("ttft_cold_s", "p50"),
    metric("decode_tok_per_s"), metric("itl_s", "p50"), metric("itl_s", "p99"),
]
CARD_BYTES = [
    loaded("weights_bytes"), metric("state_bytes"), Column("state_bytes_max", "", _state_max), metric("state_bytes_peak", "max"),
    PEAK, metric("attended_tokens"),
]
CARD_TIME = [
    loaded("load_s"), metric("ingest_s", "p50"), metric("ingest_tok_per_s"), metric("ttft_query_s", "p50"),
    metric("ttft_query_s", "p99"), metric("ttft_cold_s", "p50"), metric("e2e_s", "p50"),
]
CARD_DECODE = [
    metric("decode_tok_per_s"), metric("tpot_s", "p50"), metric("itl_s", "p50"), metric("itl_s", "p90"),
    metric("itl_s", "p99"), metric("itl_s", "cv_pct"),
]
CARD = [("Bytes to load and run", CARD_BYTES), ("Time to first token", CARD_TIME), ("Throughput and latency", CARD_DECODE)]

SAMPLE_METRICS = ["ttft_query_s", "ttft_cold_s", "e2e_s", "decode_tok_per_s", "state_bytes", "attended_tokens", "n_tokens"]
STATS = ["n", "mean", "p50", "p90", "p99", "std", "cv_pct", "min", "max"]


def rows(runs: list[Run], columns: list[Column], notes: Notes, stats: dict[str, RunStats]) -> list[dict[str, Any]]:
    """One dict per run: the run and its cells, in the order of ``columns`` (``stats``: cuts.per_run of the frame)."""
    return [{"run": r, "cells": [c.get(stats[r.id], notes) for c in columns]} for r in runs]


def ranked(runs: list[Run], stats: dict[str, RunStats]) -> list[Run]:
    """Leaderboard order (see cuts.ranked)."""
    by_id = {r.id: r for r in runs}
    return [by_id[i] for i in cuts.ranked(list(by_id), stats, {r.id: (r.method, r.model) for r in runs})]


def metric_table(run: RunStats, notes: Notes) -> list[dict[str, Any]]:
    """Every metric of a run (harness.summary.METRICS) with all its statistics (the run page's main table)."""
    out = []
    for name in METRICS:
        agg, reason = run.describe(name)
        unit = unit_of(name)
        if not agg["n"]:
            out.append({"name": name, "na": notes.na(reason), "cells": []})
            continue
        cells = [notes.cell(agg.get(s), "" if s == "n" else ("%" if s == "cv_pct" else unit)) for s in STATS]
        out.append({"name": name, "na": None, "cells": cells})
    return out


def load_table(run: Run, notes: Notes) -> list[tuple[str, Cell]]:
    load = run.summary.get("load") or {}
    out = []
    for k, v in load.items():
        if k.endswith("_reason"):
            continue
        out.append((k, notes.cell(v, unit_of(k), load.get(k + "_reason"))))
    return out
