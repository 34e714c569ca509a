"""Render the KV-cache quantization tables (Markdown) from run folders and the error JSON.

    python benchmarks/kv_quant_table.py runs/kv_quant [--error benchmarks/results/kv_quant_error_cpu.json]

Every ``summary.json`` under the given folders is one row (full_kv runs; ``method_config`` gives
the KV setting). Numbers come from the files, never typed in.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

ORDER = {"none": 0, "int8": 1, "int4": 2}


def mib(v: float | None) -> str:
    return "n/a" if v is None else f"{v / 2**20:.2f}"


def runs_table(summaries: list[dict[str, Any]]) -> str:
    """One row per run: accuracy, state bytes (and the ratio to the unquantized run), speed, memory."""
    rows = sorted(summaries, key=lambda s: (ORDER.get(s["method_config"].get("kv_quantization", "none"), 9), s["task"]))
    base = {s["task"]: s["memory"]["state_bytes"] for s in rows if s["method_config"].get("kv_quantization", "none") == "none"}
    out = ["| kv_quantization | group | residual | accuracy (n) | state_bytes | state MiB | vs none | TTFT query p50 s | TTFT cold p50 s | decode tok/s | working MiB | required MiB |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        mc, m, mt, acc = s["method_config"], s["memory"], s["metrics"], s["accuracy"]
        q = mc.get("kv_quantization", "none")
        group, residual = ("-", "-") if q == "none" else (mc["kv_group_size"], mc["kv_residual"])
        ratio = f"{m['state_bytes'] / base[s['task']]:.3f}" if s["task"] in base else "n/a"
        out.append(f"| {q} | {group} | {residual} | {acc['mean']:.2f} ({acc['n']}) | {m['state_bytes']:,} | {mib(m['state_bytes'])} | {ratio} "
                   f"| {mt['ttft_query_s']['p50']:.3f} | {mt['ttft_cold_s']['p50']:.2f} | {mt['decode_tok_per_s']['mean']:.2f} "
                   f"| {mib(m.get('working_bytes'))} | {mib(m.get('required_bytes'))} |")
    return "\n".join(out)


def persist_table(summaries: list[dict[str, Any]]) -> str:
    """Runs with run.persist=true: the saved memory's bytes (on disk and tensors) next to the state."""
    out = ["| kv_quantization | accuracy after restore (n) | state_bytes | persisted tensor bytes | persisted_bytes (files) | save_s | restore_s | ingest_s |",
           "|---|---|---|---|---|---|---|---|"]
    for s in sorted(summaries, key=lambda s: ORDER.get(s["method_config"].get("kv_quantization", "none"), 9)):
        p = (s["memory"].get("persist") or {})
        if p.get("persisted_bytes") is None:
            continue
        tensors = sum(p["persisted_tensor_bytes"].values())
        out.append(f"| {s['method_config'].get('kv_quantization', 'none')} | {s['accuracy']['mean']:.2f} ({s['accuracy']['n']}) | {s['memory']['state_bytes']:,} "
                   f"| {tensors:,} | {p['persisted_bytes']:,} | {p['save_s']:.3f} | {p['restore_s']:.3f} | {p['ingest_s']:.2f} |")
    return "\n".join(out)


def error_table(data: dict[str, Any]) -> str:
    """Per setting: mean KL and worst |Δ logit| of the next token over the prompts, top-1 agreement, bytes."""
    by: dict[tuple, list[dict]] = defaultdict(list)
    for r in data["rows"]:
        if r["bits"] is not None:
            by[(r["bits"], r["group"], r["residual"])].append(r)
    full = [r["cache_bytes"] for r in data["rows"] if r["bits"] is None]
    out = ["| KV | group | residual | mean KL(full ‖ quantized) | max abs Δ logit | same top-1 | cache bytes (mean) | vs full |",
           "|---|---|---|---|---|---|---|---|"]
    for (bits, group, residual), rs in sorted(by.items(), key=lambda kv: (-kv[0][0], kv[0][1], kv[0][2])):
        b = sum(r["cache_bytes"] for r in rs) / len(rs)
        out.append(f"| int{bits} | {group} | {residual} | {sum(r['kl'] for r in rs) / len(rs):.2e} | {max(r['max_abs_logit_diff'] for r in rs):.3f} "
                   f"| {sum(r['same_top1'] for r in rs)}/{len(rs)} | {b:,.0f} | {b / (sum(full) / len(full)):.3f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--error", help="JSON written by benchmarks/kv_quant_error.py")
    args = ap.parse_args()
    summaries = [json.loads(p.read_text(encoding="utf-8")) for f in args.folders for p in sorted(Path(f).rglob("summary.json"))]
    plain = [s for s in summaries if not s.get("run", {}).get("persist")]
    print(runs_table(plain or summaries))
    if len(plain) < len(summaries):
        print("\nWith run.persist=true (the memory saved after ingest, the method reset, the memory restored, then the answer):\n")
        print(persist_table(summaries))
    if args.error:
        data = json.loads(Path(args.error).read_text(encoding="utf-8"))
        print(f"\nNext-token error at the end of {len({r['sample'] for r in data['rows']})} passkey prompts of ~{data['length']} tokens "
              f"({data['model']}, {data['dtype']}, {data['date']}; `{data['command']}`):\n")
        print(error_table(data))


if __name__ == "__main__":
    main()
