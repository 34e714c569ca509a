"""Parts 4 and 5 of the study (agent scenario, precision) and part 6 (limitations, reproduction)."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pandas as pd

from harness import io
from harness.reporting import memory
from harness.reporting.colors import method_colors
from harness.study import plots
from harness.study.parts import FINDING_AGENT
from harness.study.sections import (COMMANDS, Section, Table, acc_text, best_of, bytes_text, cells, facts, half_width_note, pick,
                                    scored, state_text, tidy_cells, wide_table)

FINDING_PRECISION = ("Over {n_points} method × precision points on {tasks}, required bytes run from {lo} ({lo_label}) to {hi} "
                     "({hi_label}); weights take {weights}. {differ} of {n_cmp} cells differ in accuracy from the same method "
                     "and task at {base} with non-overlapping 95% intervals.")
FINDING_PERSIST = "Persisting the memory: {rows}."


def agent(site: Path, df: pd.DataFrame) -> Section:
    s = Section("agent", "4. The agent scenario", COMMANDS["agent"],
                "Rules and facts that change across sessions (multi_session, fact_update): which memory keeps up, and what does "
                "persisting it cost?")
    d = df[df["part"] == "agent"] if not df.empty else df
    if scored(d).empty:
        return s
    s.ran = True
    c = cells(d, ["task", "variant"])
    io.write_text(site / "agent.csv", tidy_cells(c).to_csv(index=False))
    s.figures = [plots.bars(plots.Canvas(site, "agent"), tidy_cells(c), "agent_scores", "Mean score per task and method",
                            "Token F1 (multi_session) or exact match (fact_update) with 95% interval.")]
    s.tables.append(wide_table(c, "variant", "task", "Mean score [95% interval], n per method × task", "agent.csv"))
    cat = cells(d[d["category"].notna()], ["task", "category", "variant"]) if d["category"].notna().any() else pd.DataFrame()
    if len(cat):
        io.write_text(site / "agent_categories.csv", tidy_cells(cat).to_csv(index=False))
        s.tables.append(Table("By question category", ["task", "category", "method", "score"],
                              [[r["task"], r["category"], r["variant"], acc_text(r["_cell"])] for _, r in cat.iterrows()],
                              "agent_categories.csv"))
    for task, g in c.groupby("task"):
        at = g.set_index("variant")
        best = best_of(at["accuracy"])
        s.finding.append(FINDING_AGENT.format(task=task, best=best, best_acc=pick(at, best.split(" = ")[0]), dm=state_text(at),
                                              none=pick(at, "no_memory")))
    _persist(site, df, s)
    s.facts = facts(d, s.command, sorted(c["ci_method"].dropna().unique()))
    if (note := half_width_note(c)) is not None:
        s.notes.append(note)
    return s


def _persist(site: Path, df: pd.DataFrame, s: Section) -> None:
    """Save/restore cost from every rendered run that persisted its memory (run.persist=true, any
    part): bytes on disk, save, restore and the re-ingest it replaces, means per method × task."""
    rows = memory.persist_rows(df) if len(df) else pd.DataFrame()
    if rows.empty:
        s.notes.append("Persist/restore cost not recorded: no rendered run was made with run.persist=true (experiment=precision "
                       "does); it needs the memory card (summary.json memory.persist).")
        return
    m = rows.groupby(["method", "task"], sort=True).agg(persisted_bytes=("persisted_bytes", "mean"), save_s=("save_s", "median"),
                                                       restore_s=("restore_s", "median"), ingest_s=("ingest_s", "median"),
                                                       runs=("run_id", "size")).reset_index()
    io.write_text(site / "agent_persist.csv", m.to_csv(index=False))
    s.tables.append(Table("Persist and restore (memory card; medians over runs of save, restore and the ingest a restore replaces)",
                          ["method", "task", "bytes on disk (mean)", "save", "restore", "re-ingest", "runs"],
                          [[r.method, r.task, bytes_text(r.persisted_bytes), f"{r.save_s * 1e3:.1f} ms", f"{r.restore_s * 1e3:.1f} ms",
                            f"{r.ingest_s:.2f} s", str(r.runs)] for r in m.itertuples()], "agent_persist.csv"))
    s.finding.append(FINDING_PERSIST.format(rows="; ".join(
        f"{r.method} on {r.task} keeps {bytes_text(r.persisted_bytes)} on disk and restores in {r.restore_s * 1e3:.1f} ms "
        f"against {r.ingest_s:.2f} s to re-ingest (medians of {r.runs} runs)" for r in m.itertuples())))


def precision(site: Path, df: pd.DataFrame) -> Section:
    s = Section("precision", "5. Precision", COMMANDS["precision"],
                "What does a lower-precision backbone or cache save in required bytes, and what does it cost in accuracy?")
    d = df[df["part"] == "precision"] if not df.empty else df
    pts = memory.precision_points(d) if not scored(d).empty else pd.DataFrame()
    if pts.empty:
        s.notes.append("Needs runs with the memory card (summary.json memory.required_bytes) and a score.")
        return s
    s.ran = True
    label = {rid: prec for prec, ids in zip(pts["precision"], pts["runs"]) for rid in ids.split()}
    d = d.assign(precision=d["run_id"].map(label))
    c = cells(d[d["precision"].notna()], ["task", "method", "precision"])
    c = c.merge(pts[["task", "method", "precision", "required_bytes", "pareto"]], on=["task", "method", "precision"], how="left")
    weights = d[d["status"] == "ok"].groupby("precision")["card.weights_bytes"].max()
    c["weights_bytes"] = c["precision"].map(weights)
    # the finding lists weights per backbone setting: a KV-cache setting leaves the weights as they are
    weights = weights.groupby(lambda p: p.split(" · KV ")[0]).max()
    io.write_text(site / "precision.csv", tidy_cells(c).to_csv(index=False))
    colors = method_colors(pts["method"].unique())
    s.figures = [memory.required_vs_accuracy(task, d, colors, site / "figures" / "precision" / str(task), f"figures/precision/{task}")
                 for task in sorted(pts["task"].unique())]
    s.tables.append(Table("Required bytes vs accuracy per task × method × precision (● = on the task's Pareto front)",
                          ["task", "method", "precision", "weights", "required", "accuracy"],
                          [[r["task"], r["method"], r["precision"] + (" ●" if r["pareto"] else ""), bytes_text(r["weights_bytes"]),
                            bytes_text(r["required_bytes"]), acc_text(r["_cell"])] for _, r in c.iterrows()], "precision.csv"))
    s.finding = [_precision_finding(c, weights)]
    s.facts = facts(d, s.command, sorted(c["ci_method"].dropna().unique()))
    if (note := half_width_note(c)) is not None:
        s.notes.append(note)
    s.notes.append("Weight quantization (torchao, weight-only) shrinks the Linear layers; the tied embedding / LM head stays in "
                   "model.dtype, and a backbone converted at load time peaks at load, so required bytes can exceed the weights' saving.")
    return s


def _precision_finding(c: pd.DataFrame, weights: pd.Series) -> str:
    base = "float32" if (c["precision"] == "float32").any() else str(c["precision"].iloc[0])
    ref = c[c["precision"] == base].set_index(["task", "method"])
    others = c[c["precision"] != base]
    differ = 0
    for r in others.itertuples():
        if (r.task, r.method) in ref.index and r.ci_low == r.ci_low and r.ci_high == r.ci_high:
            b = ref.loc[(r.task, r.method)]
            differ += int(r.ci_low > b["ci_high"] or b["ci_low"] > r.ci_high)
    n_cmp = int(sum((r.task, r.method) in ref.index for r in others.itertuples()))
    lo, hi = c.loc[c["required_bytes"].idxmin()], c.loc[c["required_bytes"].idxmax()]
    return FINDING_PRECISION.format(
        n_points=len(c), tasks=", ".join(sorted(c["task"].unique())), lo=bytes_text(lo["required_bytes"]),
        lo_label=f"{lo['method']}, {lo['precision']}", hi=bytes_text(hi["required_bytes"]), hi_label=f"{hi['method']}, {hi['precision']}",
        weights="; ".join(f"{bytes_text(w)} at {p}" for p, w in weights.sort_values(ascending=False).items() if w == w),
        differ=differ, n_cmp=n_cmp, base=base)


BUDGET_S = 4 * 3600  # the CPU study's budget on a 2-core machine


def _times(sections: list[Section], df: pd.DataFrame) -> Table:
    """Measured wall time per part: the sum of its runs' wall_s (model load, warm-up, every sample and
    repetition), part 1 from mechanism_meta.json; the total against the CPU budget."""
    runs = df[df["status"] == "ok"].drop_duplicates("run_id") if len(df) else df
    rows, total = [], 0.0
    for x in sections:
        g = runs[runs["part"] == x.id] if len(runs) else runs
        sec = x.seconds if x.id == "mechanism" else (float(g["run_wall_s"].sum()) if len(g) and g["run_wall_s"].notna().any() else None)
        devices = ", ".join(sorted({str(v) for v in g["cpu"].dropna()})) if len(g) else ""
        if sec is not None:
            total += sec
        rows.append([x.title, str(len(g)) if x.id != "mechanism" else "-",
                     f"{sec / 60:.1f} min" if sec is not None else "not measured", devices or "-"])
    rows.append(["all parts", str(len(runs)), f"{total / 3600:.2f} h ({'within' if total <= BUDGET_S else 'over'} the "
                 f"{BUDGET_S / 3600:.0f} h CPU budget)", "-"])
    return Table("Measured time per part (sum of the runs' wall time, model loading included)", ["part", "runs", "wall time", "CPU"], rows)


def adapters() -> list[dict]:
    out = []
    for folder in sorted(p for p in files("adapters").iterdir() if p.is_dir() and (p / "adapter.json").is_file()):
        meta = json.loads((folder / "adapter.json").read_text(encoding="utf-8"))
        tc = (meta.get("training") or {}).get("train_config") or {}
        out.append({"name": folder.name, "rank": (meta.get("spec") or {}).get("rank"), "steps": tc.get("steps"),
                    "command": (meta.get("training") or {}).get("command")})
    return out


def limitations(sections: list[Section], df: pd.DataFrame, rendered: dict[str, str]) -> Section:
    s = Section("limitations", "6. Limitations and reproduction", COMMANDS["render"],
                "What the numbers above can and cannot say, and how to reproduce each part.", ran=True)
    ok = df[df["status"] == "ok"] if not df.empty else df
    models = sorted(ok["model"].dropna().unique()) if len(ok) else []
    devices = sorted(ok["device"].dropna().unique()) if len(ok) else []
    s.tables.append(Table("Reproduce each part", ["part", "status", "command"],
                          [[x.title, "rendered" if x.ran else "not run yet", x.command] for x in sections] +
                          [["this site", "rendered", rendered["command"]], ["miniature of every part (CI)", "-", COMMANDS["smoke"]]]))
    s.tables.append(Table("Sample sizes", ["part", "n"], [[x.title, dict(x.facts).get("n", "not run yet")] for x in sections]))
    s.tables.append(_times(sections, df))
    ad = adapters()
    s.tables.append(Table("δ-mem adapters shipped (training budget)", ["adapter", "rank", "steps", "training command"],
                          [[a["name"], str(a["rank"]), str(a["steps"]), str(a["command"])] for a in ad]))
    s.finding = [f"Language-model parts ran on model(s): {', '.join(models) or 'none yet'}; device(s): {', '.join(devices) or 'none yet'}. "
                 f"The shipped δ-mem adapters were trained for {', '.join(str(a['steps']) + ' steps' for a in ad) or 'n/a'} on CPU; "
                 "a δ-mem row near chance measures these adapters, not the mechanism's ceiling (part 1 gives that)."]
    s.facts = [("n", "per part, in the sample sizes table below"), ("interval", "per part, stated in each section"),
               ("device", rendered["device"]), ("date", rendered["date"]), ("commit", rendered["commit"]), ("command", rendered["command"])]
    s.notes.append("Headline cells aim at a 95% half-width of at most 0.10; cells above it are listed in their section's notes.")
    return s
