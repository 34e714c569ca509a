"""Per-run summary: accuracy with a bootstrap CI, metric aggregates, per-slice breakdown; written
as summary.json and summary.md, and printed as a short console table."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from harness import io
from harness.card_build import table_rows as card_rows
from harness.stats import bootstrap_ci, describe

#: per-sample fields aggregated in the summary (itl_s is flattened over all tokens)
METRICS = [
    "ingest_s", "ingest_tok_per_s", "ttft_query_s", "ttft_cold_s", "itl_s", "tpot_s", "decode_tok_per_s", "e2e_s",
    "state_bytes", "state_bytes_peak", "attended_tokens", "context_tokens", "n_tokens",
    "host_peak_rss_bytes", "gpu_peak_allocated_bytes", "gpu_peak_reserved_bytes", "gpu_process_peak_bytes", "gpu_device_peak_bytes",
    "energy_j_ingest", "energy_j_answer", "j_per_ingested_token", "j_per_generated_token",
]
SLICE_SKIP = {"id", "rep", "slices", "category"}


def _acc(scores: list[float]) -> dict[str, Any]:
    if not scores:
        return {"mean": None, "ci95": [None, None], "n": 0}
    lo, hi = bootstrap_ci(scores)
    return {"mean": sum(scores) / len(scores), "ci95": [lo, hi], "n": len(scores)}


def summarize(rows: list[dict], metric: str = "accuracy") -> dict[str, Any]:
    first = [r for r in rows if r.get("rep", 0) == 0]
    out: dict[str, Any] = {"metric": metric, "accuracy": _acc([r["score"] for r in first]), "metrics": {}, "slices": {}}
    for name in METRICS:
        if name == "itl_s":
            vals = [v for r in rows for v in r.get("itl_s") or []]
        else:
            vals = [r.get(name) for r in rows if r.get(name) is not None]
        if vals:
            out["metrics"][name] = describe(vals)
        else:
            reasons = {r.get(name + "_reason") for r in rows if r.get(name + "_reason")}
            out["metrics"][name] = {"n": 0, "reason": "; ".join(sorted(reasons)) or "no samples"}
    keys = sorted({k for r in first for k in (r.get("slices") or {})})
    if first and first[0].get("category"):
        keys.append("category")
    for key in keys:
        groups: dict[str, list[float]] = defaultdict(list)
        for r in first:
            val = r.get(key) if key != "category" else r.get("category")
            groups[str(val)].append(r["score"])
        out["slices"][key] = {v: _acc(s) for v, s in sorted(groups.items(), key=lambda kv: _sort_key(kv[0]))}
    return out


def _sort_key(v: str) -> tuple:
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if unit == "B":
        return f"{v / 2**20:.2f} MiB"
    if unit == "s":
        return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def table_rows(summary: dict) -> list[tuple[str, str]]:
    m, a = summary["metrics"], summary["accuracy"]

    def g(name: str, stat: str = "mean") -> Any:
        return m.get(name, {}).get(stat)

    acc = "n/a" if a["mean"] is None else f"{a['mean']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}] (n={a['n']})"
    return [
        ("status", summary.get("status", "?")),
        (summary.get("metric", "accuracy"), acc),
        ("weights", _fmt(summary.get("load", {}).get("weights_bytes"), "B")),
        ("state (mean / max)", f"{_fmt(g('state_bytes'), 'B')} / {_fmt(g('state_bytes', 'max'), 'B')}"),
        ("attended tokens (mean)", _fmt(g("attended_tokens"))),
        ("ingest tok/s (mean)", _fmt(g("ingest_tok_per_s"))),
        ("TTFT query (p50)", _fmt(g("ttft_query_s", "p50"), "s")),
        ("TTFT cold (p50)", _fmt(g("ttft_cold_s", "p50"), "s")),
        ("decode tok/s (mean)", _fmt(g("decode_tok_per_s"))),
        ("ITL p50 / p99", f"{_fmt(g('itl_s', 'p50'), 's')} / {_fmt(g('itl_s', 'p99'), 's')}"),
        ("host peak RSS", _fmt(g("host_peak_rss_bytes", "max"), "B")),
        *card_rows(summary),
        ("GPU peak allocated", _fmt(g("gpu_peak_allocated_bytes", "max"), "B") if g("gpu_peak_allocated_bytes", "max") is not None else "n/a (" + m.get("gpu_peak_allocated_bytes", {}).get("reason", "") + ")"),
    ]


def render_md(summary: dict) -> str:
    lines = [f"# {summary.get('method')} × {summary.get('task')} on {summary.get('model')}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in table_rows(summary)]
    for key, groups in summary.get("slices", {}).items():
        lines += ["", f"## accuracy by {key}", "", f"| {key} | accuracy | n |", "|---|---|---|"]
        lines += [f"| {v} | {g['mean']:.3f} | {g['n']} |" for v, g in groups.items()]
    if summary.get("error"):
        lines += ["", "## error", "", "```", summary["error"]["traceback"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def console_table(summary: dict) -> str:
    rows = table_rows(summary)
    w = max(len(k) for k, _ in rows)
    head = f"{summary.get('method')} × {summary.get('task')} on {summary.get('model')}"
    return "\n".join([head, "-" * len(head)] + [f"{k:<{w}}  {v}" for k, v in rows])


def write_summary(out: Path, summary: dict) -> None:
    io.write_text(Path(out) / "summary.md", render_md(summary))
    io.write_json(Path(out) / "summary.json", summary)  # last: its presence marks a finished run
