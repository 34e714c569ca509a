"""Per-run summary: accuracy with a 95% interval that fits the scores (Wilson / bootstrap, clustered
over shared contexts; see harness.stats), metric aggregates, per-slice breakdown; written as
summary.json and summary.md, and printed as a short console table."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from harness import io
from harness.card_build import table_rows as card_rows
from harness.stats import accuracy_interval, describe, interval_label, sample_count

#: per-sample fields aggregated in the summary (itl_s is flattened over all tokens)
METRICS = [
    "ingest_s", "ingest_tok_per_s", "ttft_query_s", "ttft_cold_s", "itl_s", "tpot_s", "decode_tok_per_s", "e2e_s",
    "state_bytes", "state_bytes_peak", "attended_tokens", "context_tokens", "n_tokens",
    "host_peak_rss_bytes", "gpu_peak_allocated_bytes", "gpu_peak_reserved_bytes", "gpu_process_peak_bytes", "gpu_device_peak_bytes",
    "energy_j_ingest", "energy_j_answer", "j_per_ingested_token", "j_per_generated_token",
]
SLICE_SKIP = {"id", "rep", "slices", "category"}


def _context(row: dict, i: int) -> Any:
    # rows written before context_id was recorded: every sample its own context
    return row.get("context_id") or ("sample", i)


def summarize(rows: list[dict], metric: str = "accuracy") -> dict[str, Any]:
    first = [r for r in rows if r.get("rep", 0) == 0]
    binary = all(float(r["score"]) in (0.0, 1.0) for r in first)  # one interval kind for the run and all its slices

    def acc(group: list[tuple[int, dict]]) -> dict[str, Any]:
        return accuracy_interval([r["score"] for _, r in group], [_context(r, i) for i, r in group], binary)

    out: dict[str, Any] = {"metric": metric, "accuracy": acc(list(enumerate(first))), "metrics": {}, "slices": {}}
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
        groups: dict[str, list[tuple[int, dict]]] = defaultdict(list)
        for i, r in enumerate(first):
            val = r.get(key) if key != "category" else r.get("category")
            groups[str(val)].append((i, r))
        out["slices"][key] = {v: acc(g) for v, g in sorted(groups.items(), key=lambda kv: _sort_key(kv[0]))}
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

    return [
        ("status", summary.get("status", "?")),
        (summary.get("metric", "accuracy"), accuracy_text(a)),
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


def accuracy_text(a: dict) -> str:
    """"1.000 [0.796, 1.000] (n=15, Wilson 95% CI)", or "1.000 (n=1, no CI)" without an interval."""
    if a.get("mean") is None:
        return "n/a (no scored samples)"
    ci = a.get("ci95")
    if not ci or None in ci:
        return f"{a['mean']:.3f} ({sample_count(a)}, no CI)"
    label = interval_label(a)
    return f"{a['mean']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] ({sample_count(a)}, {(label + ' ') if label else ''}95% CI)"


def render_md(summary: dict) -> str:
    lines = [f"# {summary.get('method')} × {summary.get('task')} on {summary.get('model')}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in table_rows(summary)]
    for key, groups in summary.get("slices", {}).items():
        lines += ["", f"## accuracy by {key}", "", f"| {key} | accuracy |", "|---|---|"]
        lines += [f"| {v} | {accuracy_text(g)} |" for v, g in groups.items()]
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
