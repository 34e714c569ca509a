"""One builder per study part: data in (tidy frame or mechanism CSVs), a ``Section`` out."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness import io
from harness.study import plots
from harness.study.mechanism import capacity_at, settings_label
from harness.study.scaling import curve, element_bytes, layout_text, loglog_slope, model_layout, predict_rows
from harness.study.sections import (COMMANDS, Section, Table, acc_text, best_of, bytes_text, cells, facts, half_width_note, num, pick,
                                    scored, state_text, state_variants, tidy_cells, wide_table)

FINDING_MECHANISM = ("With r = {r}, δ-mem's update keeps at least {thr:.0%} of pairs up to N = {cap_b_lo} at β = {b_lo:g} and "
                     "N = {cap_b_hi} at β = {b_hi:g}, against N = {cap_delta} for the plain delta rule (β = {b_delta:g}) and "
                     "N = {cap_lin} for linear attention. At N = {n_age} and β = {b_hi:g} the newest pair is recalled at "
                     "{new} and the oldest at {old} (means over {trials} trials): the coupled decay λ = 1 − β keeps a pair "
                     "written a writes ago at (1 − β)^a of its strength, so what δ-mem holds is bounded by about 1/β writes as "
                     "much as by r. A selective gate (β near 0 on filler, near 1 on facts) is what lets it use its r × r capacity.")
FINDING_CAPACITY = ("At N = {n} facts, the most accurate method is {best} ({best_acc}); δ-mem state-only scores {dm} "
                    "and a window of the same KV bytes scores {win}.")
FINDING_HEADLINE = ("The headline cell, N = {n} facts: {dm} against the window of the same KV bytes at {win} ({bytes}); "
                    "full KV scores {full} and BM25 retrieval {rag}. δ-mem state-only minus window: {verdict}.")
FINDING_COST = ("Over {lo} to {hi} context tokens, full KV's measured state bytes follow the backbone's KV layout predicted "
                "from the model config: measured / predicted is {ratios}, {check}; log–log slope {s_full} measured, "
                "{s_pred} predicted.")
FINDING_DELTAMEM = "δ-mem's state bytes against the context, log–log slope (0 = constant): {dm}."
TOLERANCE = 0.10  # the prediction check: |measured / predicted − 1| at every context length
FINDING_AGENT = "On {task}, {best} scores {best_acc}; δ-mem state-only scores {dm}; no memory scores {none}."


def _part(df: pd.DataFrame, part: str) -> pd.DataFrame:
    return df[df["part"] == part] if not df.empty else df


def mechanism(site: Path, data: Path) -> Section:
    s = Section("mechanism", "1. Mechanism capacity (no language model)", COMMANDS["mechanism"],
                "How many key–value associations does an r × r state return, under δ-mem's update and its relatives?")
    csv, age_csv, meta_path = data / "mechanism_capacity.csv", data / "mechanism_age.csv", data / "mechanism_meta.json"
    if not csv.is_file():
        return s
    cells_df, ages = pd.read_csv(csv), pd.read_csv(age_csv)
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    s.ran = True
    s.seconds = meta.get("wall_s")
    c = plots.Canvas(site, "mechanism")
    s.figures = [plots.mechanism_rule(c, cells_df, rule) for rule in ("deltamem", "delta", "linear")]
    n_age = int(max(n for n in ages["n_pairs"].unique() if n <= 32))
    s.figures.append(plots.mechanism_age(c, ages, n_age))
    table = cells_df.assign(setting=[settings_label(r, b if b == b else None) for r, b in zip(cells_df["rule"], cells_df["beta"])])
    cols = sorted(table["n_pairs"].unique())
    rows = []
    for (setting, r), g in table.groupby(["setting", "r"], sort=True):
        by = g.set_index("n_pairs")
        rows.append([setting, str(r)] + [f"{by.at[n, 'accuracy']:.2f} [{by.at[n, 'ci_low']:.2f}, {by.at[n, 'ci_high']:.2f}]" for n in cols])
    s.tables.append(Table(f"Recall accuracy [95% interval] per rule × r × N ({int(cells_df['trials'].min())} trials per cell)",
                          ["rule", "r"] + [f"N = {n}" for n in cols], rows, "mechanism_capacity.csv"))
    cap = capacity_at(cells_df)
    io.write_text(site / "mechanism_capacity_at_90.csv", cap.to_csv(index=False))
    r = int(cells_df["r"].max())

    def capn(rule: str, beta: float | None) -> str:
        g = cap[(cap["rule"] == rule) & (cap["r"] == r) & ((cap["beta"] == beta) if beta is not None else cap["beta"].isna())]
        v = g["max_n_pairs"].iloc[0] if len(g) else None
        return "none" if v is None or v != v else str(int(v))

    betas = sorted(cells_df.loc[cells_df["rule"] == "deltamem", "beta"].unique())
    b_delta = float(sorted(cells_df.loc[cells_df["rule"] == "delta", "beta"].unique())[0])
    a = ages[(ages["n_pairs"] == n_age) & (ages["beta"] == betas[-1]) & (ages["r"] == r)]
    s.finding = [FINDING_MECHANISM.format(
        r=r, thr=0.9, b_lo=betas[0], b_hi=betas[-1], cap_b_lo=capn("deltamem", betas[0]), cap_b_hi=capn("deltamem", betas[-1]),
        cap_delta=capn("delta", b_delta), b_delta=b_delta, cap_lin=capn("linear", None), n_age=n_age,
        new=num(a.loc[a["age"] == 0, "accuracy"].iloc[0]), old=num(a.loc[a["age"] == a["age"].max(), "accuracy"].iloc[0]),
        trials=int(a["trials"].iloc[0]))]
    s.facts = [("n", f"{int(cells_df['trials'].min())} trials per cell × N pairs each; {len(cells_df)} cells"),
               ("interval", meta.get("interval", "95% percentile bootstrap over trials")),
               ("device", f"{meta.get('device', 'n/a')} (CPU, {meta.get('torch_threads', 1)} torch thread)"),
               ("date", str(meta.get("date", "n/a"))[:10]), ("commit", str(meta.get("git_sha") or "n/a")[:10]),
               ("time", f"{meta['wall_s']:.0f} s" if "wall_s" in meta else "n/a"), ("command", meta.get("command", s.command))]
    s.notes.append("A read counts as correct when it is closer (cosine) to its own value than to the other N − 1 written values; "
                   "this forgives interference that leaves the read's direction intact, which is why linear attention, whose "
                   "crosstalk is zero-mean, keeps up with the delta rules here.")
    s.notes.append("δ-mem normally forms keys and queries as L2norm(tanh(W x)) from the layer input; here the sampled unit "
                   "keys and values are fed to the recurrence (kernels.deltamem.scan) directly, so only the update rule is measured.")
    return s


def capacity(site: Path, df: pd.DataFrame) -> Section:
    s = Section("capacity", "2. Capacity on the language model", COMMANDS["capacity"],
                "How many facts does each memory return from a fixed context (kv_recall), and at what state size?")
    d = _part(df, "capacity")
    if scored(d).empty:
        return s
    s.ran = True
    c = cells(d, ["variant", "num_facts"])
    io.write_text(site / "capacity.csv", tidy_cells(c).to_csv(index=False))
    canvas = plots.Canvas(site, "capacity")
    plot = tidy_cells(c)
    s.figures = [plots.lines(canvas, plot, "num_facts", "accuracy", "capacity_vs_n", "Accuracy vs number of facts",
                             "Mean exact match per method and number of facts; band = 95% interval.", "facts in the context N (log scale)",
                             "accuracy", band=True),
                 plots.accuracy_vs_bytes(canvas, plot, [(v, "window") for v in state_variants(plot["variant"])])]
    s.tables.append(wide_table(c, "variant", "num_facts", "Accuracy [95% interval], n per method × number of facts", "capacity.csv"))
    s.facts = facts(d, s.command, sorted(c["ci_method"].dropna().unique()))
    n = c["num_facts"].max()
    at = c[c["num_facts"] == n].set_index("variant")
    best = best_of(at["accuracy"])
    s.finding = [FINDING_CAPACITY.format(n=int(n), best=best, best_acc=pick(at, best.split(" = ")[0]), dm=state_text(at), win=pick(at, "window"))]
    if (head := _headline(c)) is not None:
        s.finding.insert(0, head)
    if (note := half_width_note(c)) is not None:
        s.notes.append(note)
    return s


def _headline(c: pd.DataFrame) -> str | None:
    """The same-bytes comparison at the number of facts with the most samples (the headline cell:
    experiment=study_capacity_headline adds contexts there); None when it has no more than the rest."""
    n_by = c.groupby("num_facts")["n"].max()
    if n_by.nunique() < 2:
        return None
    n = int(n_by.idxmax())
    at = c[c["num_facts"] == n].set_index("variant")
    dms = [v for v in state_variants(at.index) if v in at.index]
    if "window" not in at.index or not dms:
        return None
    dm = max(dms, key=lambda v: (at.at[v, "n"], v))  # the variant given the headline samples
    w, x = at.loc["window"], at.loc[dm]
    overlap = not (x["ci_low"] > w["ci_high"] or w["ci_low"] > x["ci_high"])
    verdict = (f"{x['accuracy'] - w['accuracy']:+.2f}, " +
               ("the 95% intervals overlap, so no difference is established" if overlap else "the 95% intervals do not overlap"))
    return FINDING_HEADLINE.format(n=n, dm=f"{dm} scores {pick(at, dm)}", win=pick(at, "window"), full=pick(at, "full_kv"),
                                   rag=pick(at, "rag_bm25"), verdict=verdict,
                                   bytes=f"state {bytes_text(x['state_bytes'])} vs {bytes_text(w['state_bytes'])}")


def _cost_table(d: pd.DataFrame) -> pd.DataFrame:
    """One row per variant × model × context length: bytes as means, TTFT as medians, n samples;
    ``predicted_state_bytes`` (full KV from the model config) and the measured/predicted ratio."""
    rows = []
    for (v, model, length), g in d[d["status"] == "ok"].groupby(["variant", "model", "context_length"], sort=True):
        req, pred = g["required_bytes"].dropna(), g["predicted_state_bytes"].dropna()
        why, pwhy = g["required_bytes_reason"].dropna(), g["predicted_state_bytes_reason"].dropna()
        state = g["state_bytes"].mean()
        rows.append({"method": v, "model": model, "context_length": length, "context_tokens": g["context_tokens"].mean(),
                     "state_bytes": state, "required_bytes": req.mean() if len(req) else None,
                     "required_bytes_reason": None if len(req) else (why.iloc[0] if len(why) else "not recorded"),
                     "ttft_cold_s": g["ttft_cold_s"].median(), "ttft_query_s": g["ttft_query_s"].median(),
                     "ingest_tok_per_s": g["ingest_tok_per_s"].mean(), "decode_tok_per_s": g["decode_tok_per_s"].mean(),
                     "predicted_state_bytes": pred.mean() if len(pred) == len(g) else None,
                     "predicted_state_bytes_reason": None if len(pred) == len(g) else (pwhy.iloc[0] if len(pwhy) else "not predicted"),
                     "state_vs_predicted": state / pred.mean() if len(pred) == len(g) and pred.mean() > 0 else None,
                     "n": len(g), "dtype": g["dtype"].iloc[0]})
    return pd.DataFrame(rows)


def _predicted_curves(t: pd.DataFrame, models: dict[str, dict]) -> tuple[pd.DataFrame, list[str]]:
    """Dense predicted full-KV curves (one per model with full_kv rows) and one layout sentence each."""
    rows, texts = [], []
    full = t[t["predicted_state_bytes"].notna()]
    for model, g in full.groupby("model"):
        layout, _ = model_layout(models.get(model, {}))
        eb, _ = element_bytes(g["dtype"].iloc[0])
        if layout is None or eb is None:
            continue
        texts.append(layout_text(model, layout, eb))
        rows += [{"model": model, "context_tokens": x, "state_bytes": y}
                 for x, y in curve(layout, eb, t["context_tokens"].min(), t["context_tokens"].max())]
    return pd.DataFrame(rows), texts


def _span(lo: str, hi: str) -> str:
    return f"{lo} at every length" if lo == hi else f"{lo} to {hi}"


def _dm_state_slopes(t: pd.DataFrame) -> str:
    out = []
    for v, g in t[t["method"].str.startswith("deltamem")].groupby("method", sort=True):
        sl, why = loglog_slope(g["context_tokens"], g["state_bytes"])
        span = _span(bytes_text(g['state_bytes'].min()), bytes_text(g['state_bytes'].max()))
        out.append(f"{v} {num(sl)} ({span}, {len(g)} context lengths)" if sl is not None else f"{v} n/a ({why})")
    return "; ".join(out) if out else "n/a (δ-mem not run)"


def cost(site: Path, df: pd.DataFrame, models: dict[str, dict]) -> Section:
    s = Section("cost", "3. Cost scaling with context length", COMMANDS["cost"],
                "How do state bytes, required bytes, TTFT and decode speed grow with the context, per method?")
    d = _part(df, "cost")
    if d.empty or (d["status"] == "ok").sum() == 0:
        return s
    s.ran = True
    t = _cost_table(predict_rows(d, models))
    io.write_text(site / "cost_scaling.csv", t.to_csv(index=False))
    dense, layouts = _predicted_curves(t, models)
    canvas = plots.Canvas(site, "cost")
    by = t.rename(columns={"method": "variant"})
    s.figures = [plots.lines(canvas, by, "context_tokens", "state_bytes", "cost_state_bytes", "State bytes vs context",
                             "Mean state_bytes per method (log–log); dashed = full KV predicted from the model config.",
                             "context tokens (log scale)", "state_bytes (B, log scale)", logy=True, predicted=dense if len(dense) else None),
                 plots.lines(canvas, by, "context_tokens", "ttft_cold_s", "cost_ttft_cold",
                             "TTFT cold vs context", "p50 of ttft_cold_s (ingest + first answer token) per method, log–log.",
                             "context tokens (log scale)", "ttft_cold_s (s, log scale)", logy=True),
                 plots.lines(canvas, by, "context_tokens", "decode_tok_per_s", "cost_decode",
                             "Decode throughput vs context", "Mean decode_tok_per_s per method.", "context tokens (log scale)",
                             "decode_tok_per_s (tok/s, log scale)", logy=True)]
    slopes = []
    for v, g in t.groupby("method", sort=True):
        row = [v]
        for col in ("state_bytes", "required_bytes", "ttft_cold_s", "decode_tok_per_s"):
            sl, why = loglog_slope(g["context_tokens"], g[col])
            row.append(num(sl) if sl is not None else f"n/a ({why})")
        slopes.append(row)
    s.tables.append(Table("Fitted log–log slopes vs context tokens (1 = linear growth, 0 = constant)",
                          ["method", "state_bytes", "required_bytes", "ttft_cold_s", "decode_tok_per_s"], slopes, "cost_scaling.csv"))
    s.tables.append(Table("Measured per method × context", ["method", "context tokens", "state", "required", "TTFT cold p50", "decode tok/s", "n"],
                          [[r.method, f"{r.context_tokens:.0f}", bytes_text(r.state_bytes), bytes_text(r.required_bytes),
                            f"{r.ttft_cold_s * 1e3:.1f} ms", num(r.decode_tok_per_s, 1), str(r.n)] for r in t.itertuples()], "cost_scaling.csv"))
    pred = t[t["state_vs_predicted"].notna()].sort_values(["model", "context_tokens"])
    s.finding = [FINDING_DELTAMEM.format(dm=_dm_state_slopes(t))]
    if len(pred):
        cols = ["model", "context_tokens", "state_bytes", "predicted_state_bytes", "state_vs_predicted"]
        io.write_text(site / "cost_full_kv_predicted.csv", pred[cols].to_csv(index=False))
        dev = (pred["state_vs_predicted"] - 1).abs()
        check = f"max deviation {dev.max():.1%} over {len(pred)} context lengths ({'within' if dev.max() <= TOLERANCE else 'not within'} {TOLERANCE:.0%})"
        s.tables.append(Table(f"full KV: measured vs predicted from the model config — {check}",
                              ["model", "context tokens", "measured", "predicted", "measured / predicted"],
                              [[r.model, f"{r.context_tokens:.0f}", bytes_text(r.state_bytes), bytes_text(r.predicted_state_bytes),
                                f"{r.state_vs_predicted:.4f}"] for r in pred.itertuples()], "cost_full_kv_predicted.csv"))
        s.finding.insert(0, FINDING_COST.format(
            lo=f"{pred['context_tokens'].min():.0f}", hi=f"{pred['context_tokens'].max():.0f}", check=check,
            ratios=_span(f"{pred['state_vs_predicted'].min():.4f}", f"{pred['state_vs_predicted'].max():.4f}"),
            s_full=num(loglog_slope(pred["context_tokens"], pred["state_bytes"])[0]),
            s_pred=num(loglog_slope(pred["context_tokens"], pred["predicted_state_bytes"])[0])))
        s.notes += ["Predicted layout — " + x for x in layouts]
    for v, g in (d[d["method"] == "deltamem"] if "method.window" in d else d.iloc[:0]).groupby("variant", sort=True):
        w = pd.to_numeric(g["method.window"], errors="coerce").dropna()
        s.notes.append(f"{v}: state_bytes = the r × r states + the backbone's KV " + (
            f"window (method.window = {int(w.iloc[0])} tokens; constant once the context exceeds it)." if len(w)
            else "of the whole context (method.window = null, the paper protocol), so it grows like full KV."))
    full = t[t["method"] == "full_kv"]
    s.notes += [f"full KV prediction unavailable ({m}, {c:.0f} tokens): {w}"
                for m, c, w in full[full["state_vs_predicted"].isna()][["model", "context_tokens", "predicted_state_bytes_reason"]].itertuples(index=False)]
    s.facts = facts(d, s.command, [])
    s.facts[1] = ("interval", "none: cost cells report medians (TTFT) and means (bytes, tok/s) with n; per-sample values are in the runs")
    return s
