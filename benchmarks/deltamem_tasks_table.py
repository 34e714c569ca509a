"""Render δ-mem on the evaluation tasks (experiment=deltamem_passkey, deltamem_kv_recall,
deltamem_fact_update) into one Markdown file: every table is printed by ``results_table`` from the
runs' summary.json and samples.jsonl.

    python benchmarks/deltamem_tasks_table.py runs/dm_tasks > benchmarks/results/deltamem_tasks_cpu.md
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_table import header, load, rows  # noqa: E402

INTRO = """# δ-mem on the evaluation tasks (CPU)

State-only δ-mem (`+variant=deltamem_state`, rank 8, and `deltamem_state_r32`, rank 32: the shipped
adapters, a 256-token KV window plus the r × r states) against the same 256-token window alone and
against no memory; the paper protocol (whole context in KV + state, `deltamem_paper`) against full KV
on fact_update. Accuracy is each task's own score (exact match of the first number for passkey and
kv_recall, substring match for fact_update). For numeric answers two diagnostics come from the
samples: whether the first generated digit is the key's first digit, and the mean fraction of the
key's digits reproduced from its start. Intervals: Wilson for independent samples, Wilson on the
effective n where questions share a context (clustered), as each run computed them.
"""

SECTIONS = [
    ("## passkey by depth of the key (512 and 1,024 tokens pooled; at depth 10 % the key is outside the window at both lengths, at 50 % at 1,024)",
     "deltamem_passkey", "depth", True),
    ("## passkey by context length", "deltamem_passkey", "context_length", True),
    ("## kv_recall by number of facts (one row per context length run; 6-digit values)", "deltamem_kv_recall", "num_facts", True),
    ("## fact_update (1,024 tokens): all questions, then facts that were updated or not", "deltamem_fact_update", None, False),
    ("", "deltamem_fact_update", "updated", False),
    ("", "deltamem_fact_update", "category", False),
]


def render(root: str) -> list[str]:
    everything = load([root])
    out = [INTRO, *header(everything, "benchmarks/deltamem_tasks_table.py")]
    out.append("Commands: `python -m harness experiment=<preset>` with `<preset>` = deltamem_passkey, "
               "deltamem_kv_recall, deltamem_fact_update (configs/experiment/).\n")
    for title, preset, by, digits in SECTIONS:
        runs = [r for r in everything if any(p.name.startswith(preset + "_") for p in r["dir"].parents)]
        if not runs:
            continue
        if title:
            out += ["", title, ""]
        else:
            out.append("")
        out += rows(runs, by, card=False, digits=digits)
    return out


if __name__ == "__main__":
    print("\n".join(render(sys.argv[1] if len(sys.argv) > 1 else "runs/dm_tasks")))
