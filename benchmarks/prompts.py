"""Prompt template and stop strings, before and after: full_kv accuracy and decode time per sample.

Runs the same harness commands against two checkouts of the code (``--code``: the folder whose
``harness`` package runs; the bundled QA files are copied into it, so both see the same
data) and renders one Markdown table from the runs' own files:

    python benchmarks/prompts.py run --code /path/to/old/checkout --out runs/prompts_cpu/before
    python benchmarks/prompts.py run --code . --out runs/prompts_cpu/after
    python benchmarks/prompts.py render --before runs/prompts_cpu/before --after runs/prompts_cpu/after \\
        --before-label "354b59e" --out benchmarks/results/prompts_cpu.md

Decode seconds per sample = e2e_s - ttft_query_s (first to last generated token), averaged over the
samples that generated at least one token.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMON = "method=full_kv model=gemma3_270m model.device=cpu run.warmup=1 run.progress=false"
#: (cell, harness overrides); every cell runs with COMMON and out_dir=<out>/<cell>
CELLS = [
    ("qa (no answer_prefix)", "qa", "task=jsonl task.path=tasks/data/qa.jsonl"),
    ("qa, Question: / newline Answer: written out", "qa_prefixed", "task=jsonl task.path=tasks/data/qa_prefixed.jsonl"),
    ("qa, Question: ... Answer: on one line", "qa_prefixed_inline", "task=jsonl task.path=tasks/data/qa_prefixed_inline.jsonl"),
    ("needle", "needle", "task=needle"),
    ("passkey", "passkey", "task=passkey task.samples_per_cell=2"),
    ("kv_recall", "kv_recall", "task=kv_recall task.num_facts=[8,32]"),
    ("fact_update", "fact_update", "task=fact_update"),
    ("multi_session", "multi_session", "task=multi_session task.samples_per_cell=2"),
]
PREFIX = "OMP_NUM_THREADS=1 nice -n 5 python -m harness"


def command(overrides: str, out: str) -> str:
    return f"{PREFIX} {COMMON} {overrides} out_dir={out}"


def run(code: Path, out: Path, only: list[str]) -> None:
    for name in ("qa.jsonl", "qa_prefixed.jsonl", "qa_prefixed_inline.jsonl"):
        dst = code / "tasks" / "data" / name
        if dst.resolve() != (REPO / "tasks" / "data" / name).resolve():
            shutil.copyfile(REPO / "tasks" / "data" / name, dst)
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    for _, key, overrides in CELLS:
        if only and key not in only:
            continue
        args = ["nice", "-n", "5", sys.executable, "-m", "harness", *COMMON.split(), *overrides.split(), f"out_dir={out.resolve() / key}"]
        print("+", " ".join(args), flush=True)
        subprocess.run(args, cwd=code, env=env, check=False)  # a failed cell shows as missing in the table


def cell(root: Path, key: str) -> dict | None:
    """Accuracy, n and timings of the newest complete run under root/key, or None."""
    runs = sorted((p.parent for p in (root / key).glob("*/summary.json")), key=lambda p: p.stat().st_mtime)
    if not runs:
        return None
    d = runs[-1]
    summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
    rows = [json.loads(x) for x in (d / "samples.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = [r for r in rows if r.get("rep", 0) == 0]
    dec = [r["e2e_s"] - r["ttft_query_s"] for r in rows if r.get("e2e_s") is not None and r.get("ttft_query_s") is not None]
    env = json.loads((d / "env.json").read_text(encoding="utf-8"))
    return {
        "acc": summary["accuracy"]["mean"], "n": summary["accuracy"]["n"], "metric": summary.get("task_config", {}).get("metric") or summary.get("metric"),
        "decode_s": sum(dec) / len(dec) if dec else None, "n_tokens": sum(r["n_tokens"] for r in rows) / len(rows) if rows else None,
        "date": env.get("date"), "cpu": env.get("cpu"), "threads": env.get("torch_threads"), "status": summary.get("status"),
    }


def _f(x: float | None, nd: int) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def render(before: Path, after: Path, before_label: str) -> str:
    rows, dates, cpus = [], [], set()
    for label, key, overrides in CELLS:
        b, a = cell(before, key), cell(after, key)
        for c in (b, a):
            if c:
                dates.append(c["date"])
                cpus.add(f"{c['cpu']} ({c['threads']} torch thread(s))")
        n = "/".join(sorted({str(c["n"]) for c in (b, a) if c})) or "—"
        rows.append(
            f"| {label} | {n} | {_f(b and b['acc'], 3)} | {_f(a and a['acc'], 3)} | {_f(b and b['decode_s'], 3)} | {_f(a and a['decode_s'], 3)} "
            f"| {_f(b and b['n_tokens'], 1)} | {_f(a and a['n_tokens'], 1)} |"
        )
    dates = sorted(d for d in dates if d)
    a_bare, a_pre, a_inl = (cell(after, k) for k in ("qa", "qa_prefixed", "qa_prefixed_inline"))
    gap = ""
    if a_bare and a_pre and a_inl:
        gap = (f"After the change, the file without `answer_prefix` scores {a_bare['acc']:.3f}: {a_bare['acc'] - a_pre['acc']:+.3f} against the "
               f"written-out template ({a_pre['acc']:.3f}) and {a_bare['acc'] - a_inl['acc']:+.3f} against the one-line form ({a_inl['acc']:.3f}).")
    lines = [
        "# Prompt template and stop strings: full_kv before and after",
        "",
        f"device: {'; '.join(sorted(cpus))} (a 2-core machine heavily shared with other jobs while these ran: absolute times are inflated and noisy, compare within a row); model: gemma3_270m (base), float32 on CPU; "
        f"runs from {dates[0] if dates else '?'} to {dates[-1] if dates else '?'}.",
        "",
        f"before: the code at {before_label} (no QA template, no stop strings); after: this code (`task.template` for samples without",
        "an `answer_prefix` on base models, `task.stop` per task). Accuracy is each task's score (jsonl: `contains`);",
        "decode s = mean over samples of e2e_s - ttft_query_s; tokens = mean `n_tokens` per sample.",
        "`qa_prefixed.jsonl` writes out what the template writes (`Question: …` then `\\nAnswer:`), so after the change its",
        "prompt is the template's token for token (the old code put a space before the newline);",
        "`qa_prefixed_inline.jsonl` keeps `Answer:` on the question's line.",
        "",
        "| task | n | accuracy before | accuracy after | decode s before | decode s after | tokens before | tokens after |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        gap,
        "",
        "commands (from the repository root; \"before\" ran the same commands from a checkout of the old commit with",
        "`tasks/data/qa*.jsonl` copied in, via `python benchmarks/prompts.py run --code <checkout>`):",
        "",
        "```",
        *(command(o, f"runs/prompts_cpu/<before|after>/{k}") for _, k, o in CELLS),
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--code", type=Path, default=REPO)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--only", nargs="*", default=[])
    m = sub.add_parser("render")
    m.add_argument("--before", type=Path, required=True)
    m.add_argument("--after", type=Path, required=True)
    m.add_argument("--before-label", default="the base commit")
    m.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.cmd == "run":
        run(a.code.resolve(), a.out, a.only)
        return
    text = render(a.before, a.after, a.before_label)
    if a.out:
        from harness import io

        io.write_text(a.out, text)
    print(text)


if __name__ == "__main__":
    main()
