"""What each page shows, as plain template contexts (the same one renders the HTML page and its
Markdown twin). Pages: index (leaderboards, required bytes vs accuracy, persist / restore), one per
task (figures), one per method (report card with the memory card bars), one per run (config,
environment, samples, failure), and the glossary. Every number across runs comes from the tidy
frame: ``stats`` is ``cuts.per_run`` of it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pandas as pd

from harness.reporting import tables
from harness.reporting.cuts import RunStats
from harness.reporting.figures import Figure
from harness.reporting.fmt import Cell, Notes, truncate, unit_of
from harness.reporting.runs import Run, slug

Stats = dict[str, RunStats]
PERSIST_COLUMNS = [("persisted_bytes", "B"), ("save_s", "s"), ("restore_s", "s"), ("ingest_s", "s")]

ENV_LIBS = ["torch", "transformers", "triton", "hydra-core"]
ENV_KEYS = ["device", "dtype", "CPU", "python", *ENV_LIBS, "git"]
SAMPLE_STRINGS = ["prediction", "answers", "question", "context", "evidence"]


def by_task(runs: list[Run]) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        out[r.task].append(r)
    return dict(sorted(out.items()))


def failure(run: Run) -> dict[str, Any]:
    err = run.summary.get("error") or {}
    text = f"{err.get('type', 'unknown error')}: {err.get('message', '')}".strip().rstrip(":")
    short, _ = truncate(text.splitlines()[0] if text else "no error recorded", 200)
    return {"run": run, "status": run.status, "error": short}


def leaderboard(runs: list[Run], notes: Notes, stats: Stats) -> dict[str, Any]:
    ok = tables.ranked([r for r in runs if r.ok], stats)
    return {"columns": tables.LEADERBOARD, "rows": tables.rows(ok, tables.LEADERBOARD, notes, stats),
            "failed": [failure(r) for r in runs if not r.ok]}


def persist_table(runs: list[Run], rows: pd.DataFrame, notes: Notes) -> list[dict[str, Any]]:
    """The persist / restore rows (memory.persist_rows of the frame) as cells, with their run."""
    by_id = {r.id: r for r in runs}
    return [{"run": by_id[row["run_id"]], "cells": [notes.cell(row[c], unit, f"{c} not recorded") for c, unit in PERSIST_COLUMNS]}
            for _, row in rows.iterrows()]


def index(runs: list[Run], stats: Stats, precision: list[Figure], persist: pd.DataFrame) -> dict[str, Any]:
    notes = Notes()
    tasks = [{"name": t, "slug": slug(t), "board": leaderboard(rs, notes, stats)} for t, rs in by_task(runs).items()]
    methods = sorted({r.method for r in runs})
    return {"title": "Leaderboards", "tasks": tasks, "methods": [(m, slug(m)) for m in methods],
            "n_runs": len(runs), "n_failed": sum(not r.ok for r in runs), "precision": precision,
            "persist_columns": [c for c, _ in PERSIST_COLUMNS], "persist": persist_table(runs, persist, notes), "notes": notes}


def task(name: str, runs: list[Run], figures: list[Figure], stats: Stats) -> dict[str, Any]:
    notes = Notes()
    return {"title": f"Task: {name}", "task": name, "board": leaderboard(runs, notes, stats), "figures": figures,
            "runs": runs, "notes": notes}


def environment(run: Run, notes: Notes) -> dict[str, Cell]:
    """The environment rows of a report card; a missing value is n/a with its reason."""
    env, load = run.env, run.summary.get("load") or {}
    if not env:
        missing = notes.na("env.json is missing or unreadable")
        return {k: missing for k in ENV_KEYS}
    if env.get("gpus"):
        names = ", ".join(g.get("name", "?") for g in env["gpus"])
        device = notes.cell(f"{names} (driver {env.get('driver') or 'n/a'}, CUDA {env.get('cuda') or 'n/a'})")
    else:
        device = notes.cell(f"{load.get('device') or 'cpu'} (no GPU: {env.get('gpu_reason') or 'none recorded'})")
    versions = env.get("versions") or {}
    sha = env.get("git_sha")
    cpu = f"{env.get('cpu') or 'unknown CPU'}, {env.get('cpu_threads') or '?'} threads (torch uses {env.get('torch_threads') or '?'})"
    out = {"device": device, "dtype": notes.cell(load.get("dtype"), "", "not recorded (the run stopped before loading)"),
           "CPU": notes.cell(cpu), "python": notes.cell(env.get("python"), "", "not recorded in env.json")}
    out.update({lib: notes.cell(versions.get(lib), "", f"{lib} not installed or not recorded") for lib in ENV_LIBS})
    out["git"] = notes.cell(f"{sha[:12]}{' (dirty)' if env.get('git_dirty') else ''}" if sha else None, "",
                            env.get("git_sha_reason") or "not recorded in env.json")
    return out


def method(name: str, runs: list[Run], stats: Stats, card: Figure) -> dict[str, Any]:
    notes = Notes()
    models = []
    for model in sorted({r.model for r in runs}):
        mine = [r for r in runs if r.model == model]
        envs: dict[tuple, dict[str, Any]] = {}
        for r in mine:
            e = environment(r, notes)
            envs.setdefault(tuple(e.items()), {"env": e, "runs": [], "dates": set()})
            envs[tuple(e.items())]["runs"].append(r)
            envs[tuple(e.items())]["dates"].add(str(r.env.get("date") or "n/a")[:10])
        models.append({
            "name": model,
            "sections": [{"title": t, "columns": cols, "rows": tables.rows([r for r in mine if r.ok], cols, notes, stats)} for t, cols in tables.CARD],
            "failed": [failure(r) for r in mine if not r.ok],
            "envs": [{**v, "dates": ", ".join(sorted(v["dates"]))} for v in envs.values()],
            "env_keys": ENV_KEYS,
        })
    return {"title": f"Method: {name}", "method": name, "models": models, "card": card, "notes": notes}


def _string(value: Any, limit: int) -> dict[str, Any]:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    short, cut = truncate(text, limit)
    return {"short": short, "full": text, "cut": cut, "chars": len(text)}


def samples(run: Run, notes: Notes, limit: int = 160) -> dict[str, Any]:
    present = [k for k in SAMPLE_STRINGS if any(k in r for r in run.samples)]
    rows = []
    for r in run.samples:
        sl = r.get("slices") or {}
        rows.append({
            "id": str(r.get("id", "")), "rep": r.get("rep", 0),
            "slices": ", ".join(f"{k}={v}" for k, v in sl.items()), "category": r.get("category") or "",
            "score": notes.cell(r.get("score"), "", "no score recorded"),
            "strings": [_string(r[k], limit) if k in r else None for k in present],
            "metrics": [notes.cell(r.get(m), unit_of(m), r.get(m + "_reason")) for m in tables.SAMPLE_METRICS],
        })
    return {"strings": present, "metrics": tables.SAMPLE_METRICS, "rows": rows}


def _env_cells(run: Run, notes: Notes) -> list[tuple[str, Any]]:
    gpu_keys = {"cuda", "driver", "gpus", "gpu_count"}
    out = []
    for k, v in run.env.items():
        if k.endswith("_reason"):
            continue
        if k == "versions" and isinstance(v, dict):
            out += [(f"versions.{lib}", notes.cell(ver, "", "not installed")) for lib, ver in v.items()]
            continue
        reason = run.env.get(k + "_reason") or (run.env.get("gpu_reason") if k in gpu_keys else None) or "not recorded in env.json"
        out.append((k, notes.cell(json.dumps(v) if isinstance(v, (list, dict)) else v, unit_of(k), reason)))
    return out


def run_page(run: Run, raw: list[str], stats: Stats) -> dict[str, Any]:
    notes = Notes()  # cells are made in page order, so note numbers ascend down the page
    ctx: dict[str, Any] = {"title": f"Run: {run.method} × {run.task} on {run.model}", "run": run, "raw": raw,
                           "error": run.summary.get("error"), "columns": tables.LEADERBOARD, "stats": tables.STATS}
    ctx["wall_s"] = notes.cell(run.summary.get("wall_s"), "s", "not recorded")
    ctx["headline"] = tables.rows([run], tables.LEADERBOARD, notes, stats)[0]["cells"]
    ctx["metrics"] = tables.metric_table(stats[run.id], notes)
    ctx["load"] = tables.load_table(run, notes)
    ctx["slices"] = {key: [(val, notes.accuracy(acc)) for val, acc in groups.items()]
                     for key, groups in (run.summary.get("slices") or {}).items()}
    ctx["samples"] = samples(run, notes)
    # what the method reported about itself (protocol, adapter provenance, kernel, fallbacks, ...)
    ctx["method_info"] = [(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v))
                          for k, v in (run.summary.get("method_info") or {}).items() if k != "name" and v not in ("", None)]
    fallback = {k: run.summary.get(k) for k in ("method_config", "task_config", "run", "seed")}
    ctx["config"] = run.config_text if run.config_text is not None else json.dumps(fallback, indent=2, default=str)
    ctx["config_from"] = "config.yaml" if run.config_text is not None else "summary.json (config.yaml is missing)"
    ctx["env"] = _env_cells(run, notes)
    ctx["notes"] = notes
    return ctx
