"""One tidy pandas DataFrame over run folders: a row per sample × repetition × run.

Why one frame: every table, figure and CSV of the study is a group-by over the same rows, so a
number is computed in one place and any cut (by method, by facts, by context length) needs no new
reader. Columns:

- run: ``run_id``, ``run_path``, ``status``, ``method``, ``task``, ``model``, ``seed``,
  ``part`` / ``variant`` (``study.part`` / ``study.variant`` of the run's config; the variant
  defaults to the method), ``device``, ``dtype``, ``date``, ``cpu``, ``gpu``, ``git_sha``,
  ``ci_method`` (from summary.json when recorded), ``required_bytes`` + ``required_bytes_reason``
  (the memory card, ``summary["memory"]["required_bytes"]``, when recorded), ``persisted_bytes``,
  ``save_s``, ``restore_s``, ``persist_ingest_s`` (``summary["memory"]["persist"]``: a memory saved
  after ingest with run.persist=true, and the mean ingest_s a restore saves);
- memory card at the phase of the required peak: ``card.required_phase`` and ``card.<part>`` for
  every part (``runtime_bytes`` … ``unaccounted_bytes``) with ``card.<part>_source`` (``card.`` keeps
  them apart from the per-sample ``state_bytes``);
- load phase: ``load.<key>`` for every scalar of ``summary["load"]`` (``load.weights_bytes``,
  ``load.gpu_process_peak_bytes``, …) and ``load.<key>_reason`` where it is null;
- settings: ``method.<field>``, ``task.<field>`` and ``model.<field>`` for every setting (lists as text);
- sample: ``sample_id``, ``context_id`` (samples that share one context: queries of one episode; the
  one recorded in samples.jsonl, else derived from the id), ``rep``, ``score``, ``category``, every
  slice (``num_facts``, ``context_length``, ``depth``, …) and every scalar metric of
  harness.summary.METRICS with ``<metric>_reason`` where it is null (``itl_s`` as ``itl_mean_s`` and
  ``n_itl``; ``frame(runs, itl_gaps=True)`` adds ``itl_gaps_s``, the sample's gaps as a tuple, for
  cuts over tokens: ``df.explode("itl_gaps_s")`` gives one row per gap).

A run without samples (failed before the first sample) keeps one row with null sample fields, so
failures stay visible in every cut.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd
import yaml

from harness.card import PARTS
from harness.reporting.runs import Run, load_runs
from harness.summary import METRICS

#: id segments naming the shared context, per task whose samples share contexts (see tasks/*.py ids)
CONTEXT_ID_PARTS = {"kv_recall": 3, "fact_update": 3, "multi_session": 3}
SCALARS = [m for m in METRICS if m != "itl_s"] + ["question_tokens"]
CARD_PARTS = [*PARTS, "unaccounted_bytes", "required_bytes"]
PERSIST = {"persisted_bytes": "persisted_bytes", "save_s": "save_s", "restore_s": "restore_s", "persist_ingest_s": "ingest_s"}
NUMERIC = ("score", *SCALARS, "itl_mean_s", "required_bytes", "run_wall_s", *PERSIST, *(f"card.{p}" for p in CARD_PARTS))
CORE = ["run_id", "run_path", "status", "method", "task", "model", "seed", "part", "variant", "device", "dtype", "date", "cpu", "gpu",
        "git_sha", "ci_method", "metric", "run_wall_s", "required_bytes", "required_bytes_reason", "persisted_bytes", "save_s", "restore_s",
        "persist_ingest_s", "card.required_phase", *(f"card.{p}" for p in CARD_PARTS), "sample_id", "context_id", "rep", "score",
        "category", *SCALARS, "n_itl", "itl_mean_s"]


def _text(v: Any) -> Any:
    return "+".join(map(str, v)) if isinstance(v, (list, tuple)) else v


def _config(run: Run) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(run.config_text or "") or {}
    except yaml.YAMLError:
        cfg = {}
    return cfg if isinstance(cfg, dict) else {}


def run_columns(run: Run) -> dict[str, Any]:
    """The run-level columns (shared by all of its rows)."""
    s, env, cfg = run.summary, run.env, _config(run)
    study = cfg.get("study") if isinstance(cfg.get("study"), dict) else {}
    gpus = env.get("gpus") or []
    memory = s.get("memory") if isinstance(s.get("memory"), dict) else {}
    required = memory.get("required_bytes")
    out: dict[str, Any] = {
        "run_id": run.id, "run_path": str(run.path), "status": run.status, "method": run.method, "task": run.task,
        "model": run.model, "seed": s.get("seed"), "part": study.get("part"), "variant": study.get("variant") or run.method,
        "device": (s.get("load") or {}).get("device"), "dtype": (s.get("load") or {}).get("dtype"), "date": env.get("date"),
        "cpu": env.get("cpu"), "gpu": gpus[0].get("name") if gpus else None, "git_sha": env.get("git_sha"),
        "ci_method": (s.get("accuracy") or {}).get("ci_method"), "metric": s.get("metric"),
        "run_wall_s": s.get("wall_s"),  # the whole run: load, warm-up, every sample and repetition
        "required_bytes": required,
        "required_bytes_reason": None if required is not None else (
            memory.get("required_bytes_reason") or "summary.json has no memory card (memory.required_bytes)"),
    }
    persist = memory.get("persist") if isinstance(memory.get("persist"), dict) else memory  # older cards: top level
    for col, k in PERSIST.items():
        out[col] = persist.get(k)
    if required is not None:
        out["card.required_phase"] = memory.get("required_phase")
        for p in CARD_PARTS:
            out[f"card.{p}"] = memory.get(p)
            out[f"card.{p}_source" if memory.get(p) is not None else f"card.{p}_reason"] = (
                memory.get(p + "_source") if memory.get(p) is not None else memory.get(p + "_reason"))
    for k, v in (s.get("load") or {}).items():
        if not isinstance(v, (dict, list)):
            out[f"load.{k}"] = v
    for part in ("method", "task"):
        for k, v in (s.get(f"{part}_config") or {}).items():
            out[f"{part}.{k}"] = _text(v)
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    for k, v in model.items():
        out[f"model.{k}"] = _text(v)
    return out


def context_id(task: str, sample_id: Any) -> Any:
    if sample_id is None:
        return None
    parts = CONTEXT_ID_PARTS.get(task)
    return "-".join(str(sample_id).split("-")[:parts]) if parts else str(sample_id)


def sample_columns(task: str, row: dict[str, Any], itl_gaps: bool = False) -> dict[str, Any]:
    cid = row.get("context_id") or context_id(task, row.get("id"))
    out: dict[str, Any] = {"sample_id": row.get("id"), "context_id": cid, "rep": row.get("rep", 0),
                           "score": row.get("score"), "category": row.get("category") or None}
    for k, v in (row.get("slices") or {}).items():
        out[k] = v
    for k in SCALARS:
        out[k] = row.get(k)
        if row.get(k) is None and row.get(k + "_reason"):
            out[k + "_reason"] = row[k + "_reason"]
    itl = [float(v) for v in row.get("itl_s") or []]
    out["n_itl"] = len(itl)
    out["itl_mean_s"] = sum(itl) / len(itl) if itl else None
    if row.get("itl_s_reason"):
        out["itl_s_reason"] = row["itl_s_reason"]
    if itl_gaps:
        out["itl_gaps_s"] = tuple(itl)
    return out


def frame(runs: Sequence[Run], itl_gaps: bool = False) -> pd.DataFrame:
    """The tidy frame of ``runs`` (see the module docstring for the columns)."""
    rows = []
    for run in runs:
        base = run_columns(run)
        rows += [base | sample_columns(run.task, r, itl_gaps) for r in run.samples] or [base]
    df = pd.DataFrame(rows)
    for col in CORE:  # present even when no run has them (or there are no runs), so cuts never KeyError
        if col not in df:
            df[col] = None
    for col in NUMERIC:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def load(paths: Sequence[str] | Sequence[Any]) -> pd.DataFrame:
    """Discover and read every run folder under ``paths`` and return their tidy frame."""
    return frame(load_runs(paths))


def is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA
