"""Render the memory-card acceptance tables from run folders made by ``benchmarks/peak_rss.py``.

    python benchmarks/memory_card_table.py runs/card/full_kv runs/card/window ...

Each folder holds one run (summary.json) and outside_peak_rss.json. Prints Markdown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def mib(v: int | None) -> str:
    return "n/a" if v is None else f"{v / 2**20:.1f}"


def main(folders: list[str]) -> None:
    runs = []
    for f in folders:
        (summary,) = Path(f).rglob("summary.json")
        runs.append((json.loads(summary.read_text()), json.loads((Path(f) / "outside_peak_rss.json").read_text())["peak_rss_bytes"]))
    print("| method | weights as | accuracy | TTFT cold p50 s | decode tok/s | required MiB (phase) | outside peak RSS MiB | required / outside | runtime | weights | method params | state | working | unaccounted |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s, out in runs:
        m, ld, mt = s["memory"], s["load"], s["metrics"]
        setting = f"{ld.get('dtype')} {ld.get('quantization', 'none')}"
        speed = f"{mt['ttft_cold_s'].get('p50', 0):.2f} | {mt['decode_tok_per_s'].get('mean', 0):.2f}"
        parts = " | ".join(mib(m[p]) for p in ("runtime_bytes", "weights_bytes", "method_param_bytes", "state_bytes", "working_bytes", "unaccounted_bytes"))
        print(f"| {s['method']} | {setting} | {s['accuracy']['mean']:.2f} | {speed} | {mib(m['required_bytes'])} ({m['required_phase']}) | {mib(out)} | {m['required_bytes'] / out:.3f} | {parts} |")
    print()
    print("| method | persisted_bytes | tensor bytes per part | save_s | restore_s | ingest_s |")
    print("|---|---|---|---|---|---|")
    for s, _ in runs:
        p = s["memory"].get("persist") or {}
        if p.get("persisted_bytes") is None:
            continue
        parts = ", ".join(f"{k} {v:,}" for k, v in p["persisted_tensor_bytes"].items())
        print(f"| {s['method']} | {p['persisted_bytes']:,} | {parts} | {p['save_s']:.3f} | {p['restore_s']:.3f} | {p['ingest_s']:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
