"""Parts 4 and 5 of the study (agent scenario, precision) and part 6 (limitations, reproduction)."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pandas as pd

from harness import io
from harness.study import plots
from harness.study.parts import FINDING_AGENT
from harness.study.sections import (COMMANDS, Section, Table, acc_text, best_of, bytes_text, cells, facts, half_width_note, scored,
                                    tidy_cells, wide_table)


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
        pick = (lambda v: acc_text(at.at[v, "_cell"]) if v in at.index else "n/a (not run)")
        best = best_of(at["accuracy"])
        s.finding.append(FINDING_AGENT.format(task=task, best=best, best_acc=pick(best.split(" = ")[0]), dm=pick("deltamem_state"), none=pick("no_memory")))
    persist = d[d["status"] == "ok"].groupby("variant")[["persisted_bytes", "save_s", "restore_s", "ingest_s"]].mean()
    persist = persist[persist["persisted_bytes"].notna()]
    if len(persist):
        io.write_text(site / "agent_persist.csv", persist.reset_index().to_csv(index=False))
        s.tables.append(Table("Persist and restore (memory card)", ["method", "bytes on disk", "save", "restore", "re-ingest"],
                              [[v, bytes_text(r.persisted_bytes), f"{r.save_s:.3f} s", f"{r.restore_s:.3f} s", f"{r.ingest_s:.3f} s"]
                               for v, r in persist.iterrows()], "agent_persist.csv"))
    else:
        s.notes.append("Persist/restore cost not recorded: it needs the memory card (summary.json memory.persisted_bytes, save_s, restore_s).")
    s.facts = facts(d, s.command, sorted(c["ci_method"].dropna().unique()))
    if (note := half_width_note(c)) is not None:
        s.notes.append(note)
    return s


def precision(site: Path, df: pd.DataFrame) -> Section:
    s = Section("precision", "5. Precision", COMMANDS["precision"],
                "What does a lower-precision backbone or cache save in required bytes, and what does it cost in accuracy?")
    d = df[df["part"] == "precision"] if not df.empty else df
    if scored(d).empty:
        s.notes.append("Depends on the memory card: the model setting model.quantization and summary.json memory.required_bytes.")
        return s
    s.ran = True
    key = "model.quantization" if "model.quantization" in d else "dtype"
    c = cells(d, ["variant", key])
    req = d[d["status"] == "ok"].groupby(["variant", key])["required_bytes"].mean().rename("required_bytes").reset_index()
    c = c.merge(req, on=["variant", key], how="left")
    io.write_text(site / "precision.csv", tidy_cells(c).to_csv(index=False))
    s.tables.append(Table("Required bytes vs accuracy", ["method", key, "required", "accuracy"],
                          [[r["variant"], str(r[key]), bytes_text(r["required_bytes"]), acc_text(r["_cell"])] for _, r in c.iterrows()],
                          "precision.csv"))
    s.facts = facts(d, s.command, sorted(c["ci_method"].dropna().unique()))
    return s


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
                          [["this site", "rendered", COMMANDS["render"]], ["miniature of every part (CI)", "-", COMMANDS["smoke"]]]))
    s.tables.append(Table("Sample sizes", ["part", "n"], [[x.title, dict(x.facts).get("n", "not run yet")] for x in sections]))
    ad = adapters()
    s.tables.append(Table("δ-mem adapters shipped (training budget)", ["adapter", "rank", "steps", "training command"],
                          [[a["name"], str(a["rank"]), str(a["steps"]), str(a["command"])] for a in ad]))
    s.finding = [f"Language-model parts ran on model(s): {', '.join(models) or 'none yet'}; device(s): {', '.join(devices) or 'none yet'}. "
                 f"The shipped δ-mem adapters were trained for {', '.join(str(a['steps']) + ' steps' for a in ad) or 'n/a'} on CPU; "
                 "a δ-mem row near chance measures these adapters, not the mechanism's ceiling (part 1 gives that)."]
    s.facts = [("n", "per part, in the sample sizes table below"), ("interval", "per part, stated in each section"),
               ("device", rendered["device"]), ("date", rendered["date"]), ("commit", rendered["commit"]), ("command", COMMANDS["render"])]
    s.notes.append("Headline cells aim at a 95% half-width of at most 0.10; cells above it are listed in their section's notes.")
    return s
