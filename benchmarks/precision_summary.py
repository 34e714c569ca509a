"""Render the precision study (experiment=precision and experiment=precision_kv) as Markdown: the
tables and the paragraph on what they show, every number computed from the runs' summary.json.

    python benchmarks/precision_summary.py runs/precision > benchmarks/results/precision_cpu.md

Precision setting = backbone dtype + weight quantization (+ KV-cache quantization for full_kv).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_table import header, interval, load, mib  # noqa: E402

ORDER = ["float32 none", "bfloat16 none", "bfloat16 int8", "bfloat16 int4"]


def setting(s: dict[str, Any]) -> str:
    return f"{s['load'].get('dtype')} {s['load'].get('quantization', 'none')}"


def kv(s: dict[str, Any]) -> str:
    return str((s.get("method_config") or {}).get("kv_quantization", "none"))


def stat(s: dict[str, Any], name: str, key: str) -> float | None:
    return ((s.get("metrics") or {}).get(name) or {}).get(key)


def state_max(s: dict[str, Any]) -> int:
    return max(ph.get("state_bytes") or 0 for ph in (s["memory"].get("phases") or {"": s["memory"]}).values())


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ca, cb = a.get("ci95"), b.get("ci95")
    return bool(ca and cb and ca[0] <= cb[1] and cb[0] <= ca[1])


def full_kv_weights(by: dict, settings: list[str]) -> dict[str, int]:
    """Backbone weights bytes per precision, from the first full_kv run with an unquantized cache."""
    out: dict[str, int] = {}
    for (m, _, p, q), s in by.items():
        if m == "full_kv" and q == "none" and p in settings:
            out.setdefault(p, s["memory"]["weights_bytes"])
    return {p: out[p] for p in settings if p in out}


def render(roots: list[str]) -> list[str]:
    runs = [r["summary"] for r in load(roots)]
    by: dict[tuple[str, str, str, str], dict[str, Any]] = {(s["method"], s["task"], setting(s), kv(s)): s for s in runs}
    methods = sorted({k[0] for k in by})
    tasks = sorted({k[1] for k in by})
    settings = [p for p in ORDER if any(k[2] == p for k in by)] + sorted({k[2] for k in by} - set(ORDER))
    out = ["# Precision on CPU: what each backbone precision stores, needs and answers", ""]
    out += header(load(roots), "benchmarks/precision_summary.py")
    out += ["Commands: `python -m harness experiment=precision` and `python -m harness experiment=precision_kv`",
            "(configs/precision/: fp32, bf16, bf16 + torchao int8, bf16 + torchao int4 weight-only; KV cache int8 / int4",
            "for full_kv). MiB = 2^20 bytes. Accuracy intervals as each run computed them (method named).", ""]

    # 1. per precision: weights and speed
    out += ["## Weights and speed per precision", "",
            "| precision | weights MiB (full_kv) | vs fp32 | decode tok/s, median over runs | vs fp32 | TTFT query p50 s, median | runs |",
            "|---|---|---|---|---|---|---|"]
    weights = full_kv_weights(by, settings)
    speed: dict[str, float] = {}
    for p in settings:
        rs = [s for k, s in by.items() if k[2] == p and k[3] == "none"]
        w = weights.get(p)
        dec = [v for v in (stat(s, "decode_tok_per_s", "mean") for s in rs) if v is not None]
        ttft = [v for v in (stat(s, "ttft_query_s", "p50") for s in rs) if v is not None]
        speed[p] = statistics.median(dec) if dec else float("nan")
        rel_w = f"{w / weights[settings[0]]:.2f}" if w and weights.get(settings[0]) else "n/a"
        rel_s = f"{speed[p] / speed[settings[0]]:.2f}" if dec and speed.get(settings[0]) else "n/a"
        out.append(f"| {p} | {mib(w)} | {rel_w} | {speed[p]:.2f} | {rel_s} | {statistics.median(ttft) if ttft else float('nan'):.3f} | {len(rs)} |")
    out.append("")

    # 2. method × precision: accuracy and bytes
    out += ["## Accuracy and the memory card per method and precision", "",
            "Card columns (MiB) are the parts of the required peak at its phase (they add up to it with the runtime"
            " and the unaccounted rest); \"state max\" is the largest state over phases.", "",
            "| method | precision | " + " | ".join(f"{t} accuracy" for t in tasks) + " | required MiB (phase) | weights | method params | state | working | state max | persisted bytes | restore s | re-ingest s |",
            "|---|---|" + "---|" * len(tasks) + "---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        for p in settings:
            row = [by.get((m, t, p, "none")) for t in tasks]
            if not any(row):
                continue
            s = max((x for x in row if x), key=lambda x: x["memory"]["required_bytes"])  # the card of the larger peak
            me = s["memory"]
            per = me.get("persist") or {}
            req = (me["required_bytes"], me["required_phase"])
            accs = [interval(x["accuracy"]) if x else "not run" for x in row]
            out.append(f"| {m} | {p} | " + " | ".join(accs) + f" | {mib(req[0])} ({req[1]}) | {mib(me['weights_bytes'])} | "
                       f"{mib(me['method_param_bytes'])} | {mib(me['state_bytes'])} | {mib(me['working_bytes'])} | {mib(state_max(s))} | "
                       f"{per.get('persisted_bytes', 'n/a'):,} | {per.get('restore_s', float('nan')):.4f} | {per.get('ingest_s', float('nan')):.2f} |")
    out.append("")

    # 3. KV-cache quantization
    kvs = sorted({k[3] for k in by if k[0] == "full_kv"}, key=lambda q: (q != "none", q[::-1]))  # none, int8, int4
    if len(kvs) > 1:
        out += ["## KV-cache quantization (full_kv)", "",
                "| precision | KV cache | " + " | ".join(f"{t} accuracy" for t in tasks) + " | state max MiB | vs unquantized | decode tok/s |",
                "|---|---|" + "---|" * len(tasks) + "---|---|---|"]
        for p in settings:
            ref = by.get(("full_kv", tasks[0], p, "none"))
            for q in kvs:
                row = [by.get(("full_kv", t, p, q)) for t in tasks]
                if not any(row):
                    continue
                s = next(x for x in row if x)
                rel = f"{state_max(s) / state_max(ref):.3f}" if ref and state_max(ref) else "n/a"
                out.append(f"| {p} | {q} | " + " | ".join(interval(x["accuracy"]) if x else "not run" for x in row)
                           + f" | {mib(state_max(s))} | {rel} | {stat(s, 'decode_tok_per_s', 'mean') or float('nan'):.2f} |")
        out.append("")
    out += ["## What it shows", ""] + findings(by, methods, tasks, settings, speed)
    return out


def findings(by: dict, methods: list[str], tasks: list[str], settings: list[str], speed: dict[str, float]) -> list[str]:
    """Sentences whose every number is computed here."""
    lines = []
    ref = settings[0]
    w = full_kv_weights(by, settings)
    if ref in w:
        lines.append("- **Weights** relative to " + ref + ": " + "; ".join(f"{p} {mib(v)} MiB ({v / w[ref]:.2f}×)" for p, v in w.items() if p != ref)
                     + ". The tied embedding / LM head stays in the backbone dtype under weight-only quantization, and torchao's int4"
                     " on CPU stores one value per byte, so int4 is not smaller than int8 here.")
    req = sorted(((s["memory"]["required_bytes"], m, p, s["memory"]["required_phase"]) for (m, t, p, q), s in by.items() if q == "none"))
    if req:
        lo, hi = req[0], req[-1]
        phases = {}
        for _, _, p, ph in req:
            phases.setdefault(p, set()).add(ph)
        lines.append(f"- **Required bytes** range from {mib(lo[0])} MiB ({lo[1]}, {lo[2]}) to {mib(hi[0])} MiB ({hi[1]}, {hi[2]}). "
                     "Phase of the peak per precision: " + "; ".join(f"{p}: {', '.join(sorted(v))}" for p, v in phases.items())
                     + " (a peak at load means converting the cached fp32 checkpoint costs more than running).")
    changed, total = [], 0
    for m in methods:
        for t in tasks:
            a = by.get((m, t, ref, "none"))
            for p in settings[1:]:
                b = by.get((m, t, p, "none"))
                if a and b:
                    total += 1
                    if not overlap(a["accuracy"], b["accuracy"]):
                        changed.append(f"{m} on {t} at {p} ({a['accuracy']['mean']:.2f} → {b['accuracy']['mean']:.2f})")
    if total:
        lines.append(f"- **Accuracy**: of {total} method × task × precision cells compared with {ref}, "
                     + (f"{len(changed)} differ beyond overlapping 95 % intervals: {'; '.join(changed)}." if changed else
                        "none differs beyond overlapping 95 % intervals (n per cell is small: see the table)."))
    for q in sorted({k[3] for k in by} - {"none"}):
        pairs = [(by[("full_kv", t, ref, "none")], by[("full_kv", t, ref, q)]) for t in tasks
                 if ("full_kv", t, ref, "none") in by and ("full_kv", t, ref, q) in by]
        if pairs:
            lines.append(f"- **KV cache {q}** (full_kv, {ref}): state {state_max(pairs[0][1]) / state_max(pairs[0][0]):.3f}× the unquantized "
                         "cache (packed values, scales, zero points and the full-precision residual counted); accuracy "
                         + "; ".join(f"{b['task']} {a['accuracy']['mean']:.2f} → {b['accuracy']['mean']:.2f} (n={b['accuracy']['n']})" for a, b in pairs) + ".")
    if ref in speed and speed[ref] == speed[ref]:
        lines.append("- **Decode speed** (median tok/s over the runs) relative to " + ref + ": "
                     + "; ".join(f"{p} {speed[p] / speed[ref]:.2f}×" for p in settings[1:] if p in speed) + ".")
    return lines


if __name__ == "__main__":
    print("\n".join(render(sys.argv[1:] or ["runs/precision"])))
