"""The study's sections as template contexts, all derived from the tidy frame (LLM parts) or the
mechanism CSVs (part 1). A section whose runs are absent says "not run yet" with its command.

Findings are short format templates (``FINDING_*``) filled with numbers computed here; every number
is written with its n and its 95 % interval (see ``acc_text``), so no number in the prose is typed.
"""

from __future__ import annotations

from pathlib import Path

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.study.intervals import TARGET_HALF_WIDTH, mean_interval

COMMANDS = {
    "mechanism": "python -m harness.study.mechanism --out docs/study",
    "capacity": "python -m harness experiment=study_capacity",
    "cost": "python -m harness experiment=study_cost   # GPU, 512 to 32k tokens: experiment=study_cost_gpu",
    "agent": "python -m harness experiment=study_agent",
    "precision": "python -m harness experiment=study_precision",
    "render": "python -m harness.study runs/sweeps --out docs/study",
    "smoke": "python -m harness experiment=study_smoke && python -m harness.study runs/sweeps --out /tmp/study_smoke",
}
#: when a run's config has no study.part, its task decides the section
TASK_PART = {"kv_recall": "capacity", "passkey": "cost", "multi_session": "agent", "fact_update": "agent"}
INTERVAL_TEXT = {"wilson": "Wilson score (independent 0/1 samples)",
                 "wilson_clustered": "Wilson score on the effective n (questions of one context count as fewer independent samples; "
                                     "n = number of contexts where every context scored alike)",
                 "bootstrap": "percentile bootstrap of the mean (independent samples, 2000 resamples)",
                 "cluster_bootstrap": "percentile bootstrap over contexts (queries of one context resampled together, 2000 resamples)",
                 "trial_bootstrap": "percentile bootstrap over trials (2000 resamples)"}


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    csv: str | None = None  # the same numbers, tidy, relative to the site root


@dataclass
class Section:
    id: str
    title: str
    command: str
    question: str
    ran: bool = False
    facts: list[tuple[str, str]] = field(default_factory=list)  # n, interval, device, date, commit
    finding: list[str] = field(default_factory=list)
    figures: list[Any] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None  # measured wall time of the part's computation (part 1: mechanism_meta.json wall_s)

    @property
    def not_run(self) -> str:
        return f"not run yet: {self.command}"


def num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}" if round(x, digits) != 0 else f"{0:.{digits}f}"  # a fitted -1e-17 is "0.00", not "-0.00"


def acc_text(c: dict[str, Any]) -> str:
    """'0.83 [0.76, 0.89], n = 32 (8 contexts)': a mean always travels with its interval and n."""
    if c.get("mean") is None:
        return f"n/a ({c.get('ci_reason', 'no samples')})"
    ci = f" [{num(c['ci_low'])}, {num(c['ci_high'])}]" if c.get("ci_low") is not None else f" (no interval: {c.get('ci_reason')})"
    ctx = f" ({c['n_contexts']} context{'s' if c['n_contexts'] != 1 else ''})" if c.get("n_contexts") and c["n_contexts"] != c["n"] else ""
    return f"{num(c['mean'])}{ci}, n = {c['n']}{ctx}"


def bytes_text(b: Any) -> str:
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return "n/a"
    return f"{b / 2**20:,.2f} MiB" if b >= 2**20 else f"{b / 2**10:,.1f} KiB" if b >= 2**10 else f"{int(b)} B"


def assign_parts(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["part"] = df["part"].where(df["part"].notna(), df["task"].map(TASK_PART))
    return df


def scored(df: pd.DataFrame) -> pd.DataFrame:
    """Successful runs' repetition-0 rows with a score (accuracy counts every sample once)."""
    return df[(df["status"] == "ok") & (df["rep"] == 0) & df["score"].notna()]


def cells(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean score with interval per group, plus the mean state bytes: one row per group."""
    rows = []
    for key, g in scored(df).groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        # a context is the run's seed + its id: pooled runs with other seeds (a headline cell) hold other contexts
        c = mean_interval(g["score"].tolist(), (g["seed"].astype(str) + ":" + g["context_id"].astype(str)).tolist())
        rows.append(dict(zip(by, key)) | {"accuracy": c["mean"], "ci_low": c["ci_low"], "ci_high": c["ci_high"], "n": c["n"],
                                          "n_contexts": c["n_contexts"], "ci_method": c["ci_method"], "half_width": c["half_width"],
                                          "state_bytes": g["state_bytes"].mean(), "_cell": c})
    out = pd.DataFrame(rows)
    for col in ("accuracy", "ci_low", "ci_high", "half_width", "state_bytes"):
        if col in out:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    return out


def facts(df: pd.DataFrame, command: str, interval_methods: list[str]) -> list[tuple[str, str]]:
    """The facts every section states: n, interval method, device, date, commit, command."""
    ok = df[df["status"] == "ok"]
    per_run = ok.groupby("run_id").size()
    devices = sorted({f"{d} ({c or g})" for d, c, g in ok[["device", "cpu", "gpu"]].drop_duplicates().itertuples(index=False)
                      if d is not None})
    dates = sorted(str(d)[:10] for d in ok["date"].dropna().unique())
    shas = sorted({str(s)[:10] for s in ok["git_sha"].dropna()})
    bad = df[df["status"] != "ok"]["run_id"].nunique()
    return [("n", f"{int(scored(df).shape[0])} scored samples in {per_run.size} runs ({int(per_run.min())}–{int(per_run.max())} rows per run)"
             + (f"; {bad} runs did not finish ok" if bad else "")),
            ("interval", "; ".join(INTERVAL_TEXT.get(m, m) for m in interval_methods) or "none (fewer than 2 samples per cell)"),
            ("device", ", ".join(devices) or "n/a"), ("date", f"{dates[0]} to {dates[-1]}" if dates else "n/a"),
            ("commit", ", ".join(shas) or "n/a"), ("command", command)] + [("as run", c) for c in as_run(ok) if c != command]


def as_run(df: pd.DataFrame) -> list[str]:
    """The command lines the section's sweeps were really started with (their multirun.yaml), so a
    reduced run (fewer repetitions, fewer variants) is never shown under the preset's full command.
    Output folders are left out: the pages show no local paths."""
    import yaml

    seen: list[str] = []
    for path in sorted({str(p) for p in df.get("run_path", pd.Series(dtype=object)).dropna()}):
        mr = Path(path).parent / "multirun.yaml"
        if not mr.is_file():
            continue
        try:
            task = yaml.safe_load(mr.read_text(encoding="utf-8"))["hydra"]["overrides"]["task"]
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            continue
        line = "python -m harness " + " ".join(o for o in task if not o.lstrip("+").startswith(("out_dir=", "run.progress=")))
        if line not in seen:
            seen.append(line)
    return seen


def pick(at: pd.DataFrame, variant: str) -> str:
    """One variant's cell of ``at`` (cells indexed by variant) as text, or why there is none."""
    return acc_text(at.at[variant, "_cell"]) if variant in at.index else "n/a (not run)"


def state_variants(variants: Any) -> list[str]:
    """δ-mem state-only variants (every shipped rank: deltamem_state, deltamem_state_r32, ...), sorted."""
    return sorted({str(v) for v in variants if str(v).startswith("deltamem_state")})


def state_text(at: pd.DataFrame) -> str:
    """'deltamem_state 0.10 [..], n = ..; deltamem_state_r32 ...': every δ-mem state-only rank that ran."""
    vs = state_variants(at.index)
    return "; ".join(f"{v} {pick(at, v)}" for v in vs) if vs else "n/a (not run)"


def best_of(accuracy: pd.Series) -> str:
    """The index label(s) with the highest accuracy, ties named together ("a = b")."""
    top = accuracy.max()
    return " = ".join(str(v) for v in accuracy.index[accuracy == top]) if pd.notna(top) else "n/a"


def wide_table(c: pd.DataFrame, row: str, col: str, title: str, csv: str | None = None) -> Table:
    cols = sorted(c[col].dropna().unique())
    rows = []
    for r, g in c.groupby(row, sort=True):
        by = {k: v for k, v in zip(g[col], g["_cell"])}
        rows.append([str(r)] + [acc_text(by[k]) if k in by else "n/a (not run)" for k in cols])
    return Table(title, [row] + [f"{col} = {k:g}" if isinstance(k, numbers.Number) else str(k) for k in cols], rows, csv)


def half_width_note(c: pd.DataFrame) -> str | None:
    wide = c[c["half_width"].notna() & (c["half_width"] > TARGET_HALF_WIDTH)]
    if wide.empty:
        return None
    return (f"{len(wide)} of {len(c)} cells have a 95% half-width above {TARGET_HALF_WIDTH:.2f} (n per cell "
            f"{int(c['n'].min())}–{int(c['n'].max())}; about 100 independent samples would be needed): "
            "the CPU time budget of this study bounds the samples per cell.")


def tidy_cells(c: pd.DataFrame) -> pd.DataFrame:
    return c.drop(columns=["_cell"]) if "_cell" in c else c
