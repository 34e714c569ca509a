"""Render a Markdown results table from run folders: accuracy with its interval and n, per slice,
next to the memory card and speed, one row per run (× slice value).

    python benchmarks/results_table.py runs/precision --card > benchmarks/results/precision_runs.md
    python benchmarks/results_table.py runs/dm_tasks --slice num_facts --digits

Every number comes from the runs' summary.json; the header names the device, dates and commit from
their env.json. ``--digits`` adds two diagnostics for numeric answers, computed from samples.jsonl:
whether the first digit of the output is the answer's first digit (with its interval, clustered by
context), and the mean fraction of the answer's digits reproduced from the start. Columns that identify a run are the method settings that differ between the runs
found (e.g. ``window``, ``rank``, ``kv_quantization``), the task settings that differ (e.g.
``context_length``), and the backbone dtype and weight quantization.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.stats import accuracy_interval  # noqa: E402

#: method settings never shown as a distinguishing column (bookkeeping or long)
HIDDEN = {"name", "alloc_mib", "spec", "description"}


def load(roots: list[str]) -> list[dict[str, Any]]:
    """Every finished run under the roots: its summary, env and folder."""
    runs = []
    for root in roots:
        for summary in sorted(Path(root).rglob("summary.json")):
            s = json.loads(summary.read_text())
            if s.get("status") not in (None, "ok", "complete"):
                continue
            env_file = summary.parent / "env.json"
            env = json.loads(env_file.read_text()) if env_file.exists() else {}
            samples_file = summary.parent / "samples.jsonl"
            samples = [json.loads(line) for line in samples_file.read_text().splitlines() if line.strip()] if samples_file.exists() else []
            runs.append({"summary": s, "env": env, "dir": summary.parent, "samples": samples})
    if not runs:
        raise SystemExit(f"no summary.json under {', '.join(roots)}")
    return runs


def varying(runs: list[dict[str, Any]], part: str = "method") -> list[str]:
    """Keys of ``<part>_config`` (method or task) whose scalar values differ between runs of the same
    method (task)."""
    keys: dict[str, set[str]] = {}
    for r in runs:
        for k, v in (r["summary"].get(f"{part}_config") or {}).items():
            if k not in HIDDEN and not isinstance(v, (dict, list)):
                keys.setdefault(f"{r['summary'][part]}.{k}", set()).add(json.dumps(v))
    return sorted({k.split(".", 1)[1] for k, vals in keys.items() if len(vals) > 1})


def value(s: dict[str, Any], part: str, key: str) -> str:
    v = (s.get(f"{part}_config") or {}).get(key, "")
    return str(v)


def interval(entry: dict[str, Any]) -> str:
    ci = entry.get("ci95")
    if not ci:
        return f"{entry['mean']:.3f} (n={entry['n']}, no CI)"
    return f"{entry['mean']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] (n={entry['n']}, {entry.get('ci_method', '?')})"


def mib(v: Any) -> str:
    return "n/a" if v is None else f"{v / 2**20:,.1f}"


def metric(s: dict[str, Any], name: str, stat: str) -> str:
    v = (s.get("metrics") or {}).get(name, {}).get(stat)
    return "n/a" if v is None else f"{v:.3g}"


def leading_digits(prediction: str, answer: str) -> tuple[float, float]:
    """(first digit right 0/1, fraction of the answer's digits reproduced from the start) of the
    output's first run of digits against a numeric answer."""
    m = re.search(r"\d+", prediction)
    got = m.group(0) if m else ""
    right = next((i for i, (a, b) in enumerate(zip(got, answer)) if a != b), min(len(got), len(answer)))
    return float(bool(got) and got[0] == answer[0]), right / len(answer)


def digit_cells(samples: list[dict[str, Any]], by: str | None, value: str | None) -> list[str]:
    """First-digit accuracy (interval clustered by context) and mean leading-digit fraction over the
    run's samples (those of one slice value when ``by``), first repetition only."""
    first, frac, ctx = [], [], []
    for r in samples:
        if str(r.get("rep", "0")) != "0" or (by and str((r.get("slices") or {}).get(by)) != value):
            continue
        f, d = leading_digits(str(r.get("prediction") or ""), str((r.get("answers") or [""])[0]))
        first.append(f)
        frac.append(d)
        ctx.append(r.get("context_id") or r.get("id"))
    if not first:
        return ["n/a", "n/a"]
    return [interval(accuracy_interval(first, ctx)), f"{sum(frac) / len(frac):.3f}"]


def rows(runs: list[dict[str, Any]], by: str | None, card: bool, digits: bool = False) -> list[str]:
    keys, tkeys = varying(runs), [k for k in varying(runs, "task") if k != by]
    head = ["method", *keys, "weights as", "task", *tkeys, *([by] if by else []), "accuracy [95 % CI] (n, method)"]
    if digits:
        head += ["first digit right [95 % CI]", "leading digits right (mean fraction)"]
    if card:
        head += ["required MiB (phase)", "weights MiB", "state MiB", "TTFT query p50 s", "decode tok/s"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ordered = sorted(runs, key=lambda r: (r["summary"]["task"], r["summary"]["method"],
                                          [_order((r["summary"].get("method_config") or {}).get(k)) for k in keys],
                                          [_order((r["summary"].get("task_config") or {}).get(k)) for k in tkeys],
                                          str(r["summary"]["load"].get("dtype")), str(r["summary"]["load"].get("quantization"))))
    for r in ordered:
        s = r["summary"]
        mc = s.get("method_config") or {}
        ident = [s["method"], *(str(mc.get(k, "")) for k in keys),
                 f"{s['load'].get('dtype')} {s['load'].get('quantization', 'none')}", s["task"], *(value(s, "task", k) for k in tkeys)]
        cells: list[tuple[list[str], dict[str, Any]]] = [([], s["accuracy"])]
        if by:
            level = (s.get("slices") or {}).get(by) or {}
            cells = [([v], e) for v, e in sorted(level.items(), key=lambda kv: (not _num(kv[0]), float(kv[0]) if _num(kv[0]) else 0, kv[0]))]
        for vals, entry in cells:
            line = ident + vals + [interval(entry)]
            if digits:
                line += digit_cells(r["samples"], by, vals[0] if vals else None)
            if card:
                m = s.get("memory") or {}
                line += [f"{mib(m.get('required_bytes'))} ({m.get('required_phase', '?')})", mib(m.get("weights_bytes")),
                         mib(m.get("state_bytes")), metric(s, "ttft_query_s", "p50"), metric(s, "decode_tok_per_s", "mean")]
            out.append("| " + " | ".join(line) + " |")
    return out


def _order(v: Any) -> tuple[bool, float, str]:
    """Sort key: numbers by value, before anything else (by its JSON text)."""
    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    return (not number, float(v) if number else 0.0, "" if number else json.dumps(v))


def _num(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def header(runs: list[dict[str, Any]], script: str = "benchmarks/results_table.py") -> list[str]:
    envs = [r["env"] for r in runs]
    cpus = sorted({str(e.get("cpu")) for e in envs})
    gpus = sorted({", ".join(g.get("name", "?") for g in e.get("gpus") or []) or "no GPU" for e in envs})
    dates = sorted(str(e.get("date", "?"))[:10] for e in envs)
    shas = sorted({str(e.get("git_sha", "?"))[:10] + (" (dirty)" if e.get("git_dirty") else "") for e in envs})
    return [f"{len(runs)} runs; device: {'; '.join(cpus)} ({'; '.join(gpus)}); dates {dates[0]} to {dates[-1]}; "
            f"commit {', '.join(shas)}. Rendered by `{script}` from the runs' summary.json.", ""]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", nargs="+", help="folders searched for summary.json")
    ap.add_argument("--slice", default=None, help="summary.json slice to break accuracy down by (e.g. num_facts)")
    ap.add_argument("--card", action="store_true", help="add the memory card and speed columns")
    ap.add_argument("--digits", action="store_true", help="add first-digit and leading-digit diagnostics for numeric answers")
    a = ap.parse_args(argv)
    runs = load(a.roots)
    print("\n".join(header(runs) + rows(runs, a.slice, a.card, a.digits)))


if __name__ == "__main__":
    main()
