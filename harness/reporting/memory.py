"""The memory card on the pages, cut from the tidy frame like every other number:

- a stacked horizontal bar per run of a method (runtime | weights | method params | state | working |
  unaccounted) at the phase of the run's required peak, every part labelled in MiB/GiB;
- "required bytes vs accuracy": one point per method × precision (model.dtype, model.quantization,
  method.kv_quantization where the method has it) per task, with the Pareto front (fewer bytes,
  higher accuracy) ringed and every point labelled;
- the "persist / restore" rows: bytes on disk, save and restore time next to the ingest time a
  restore saves, for runs made with run.persist=true.

Each figure's data is saved beside it as a tidy CSV; a figure without data is not drawn and the
page says why.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure as MplFigure
from matplotlib.patches import Patch

from harness.card import PARTS
from harness.reporting import cuts
from harness.reporting.figures import Figure, save
from harness.reporting.fmt import fmt_value

SEGMENTS = [*PARTS, "unaccounted_bytes"]  # drawn left to right
SEGMENT_LABELS = {"runtime_bytes": "runtime", "weights_bytes": "weights", "method_param_bytes": "method params",
                  "state_bytes": "state", "working_bytes": "working", "unaccounted_bytes": "unaccounted"}
SEGMENT_COLORS = {"runtime_bytes": "#9e9e9e", "weights_bytes": "#1f77b4", "method_param_bytes": "#9467bd",
                  "state_bytes": "#2ca02c", "working_bytes": "#ff7f0e", "unaccounted_bytes": "#e0e0e0"}
MIB, GIB = 2**20, 2**30
PRECISION = ["dtype", "quantization", "kv_quantization"]


def _first(df: pd.DataFrame) -> pd.DataFrame:
    """One row per successful run (its run-level columns)."""
    return df[df["status"] == "ok"].drop_duplicates("run_id")


def card_parts(df: pd.DataFrame) -> pd.DataFrame:
    """run_id, method, model, task, phase, part, bytes, source, required_bytes: one row per segment
    of each successful run that has a memory card (null bytes where a part was not measured)."""
    cols = ["run_id", "method", "model", "task", "phase", "part", "bytes", "source", "required_bytes"]
    runs = _first(df)
    runs = runs[runs["card.required_bytes"].notna()]
    out = [{"run_id": r["run_id"], "method": r["method"], "model": r["model"], "task": r["task"], "phase": r["card.required_phase"],
            "part": part, "bytes": r[f"card.{part}"], "source": r.get(f"card.{part}_source"), "required_bytes": r["card.required_bytes"]}
           for _, r in runs.iterrows() for part in SEGMENTS]
    return pd.DataFrame(out, columns=cols)


def _unit(peak: float) -> tuple[float, str]:
    return (GIB, "GiB") if peak >= GIB else (MIB, "MiB")


def card_bars(df: pd.DataFrame, out: Path, rel: str, key: str = "memory_card") -> Figure:
    """The stacked bars of every run in ``df`` (one method's runs), saved under ``out``."""
    title = "Bytes to load and run: the memory card"
    caption = ("One bar per run (named on the left) at the phase of its required peak; segments from left to right: runtime_bytes, "
               "weights_bytes, method_param_bytes, state_bytes, working_bytes, unaccounted_bytes, each labelled under its bar; "
               "the bar ends at required_bytes. A negative unaccounted_bytes (parts above the peak) is labelled, not drawn.")
    data = card_parts(df)
    if data.empty:
        return Figure(key, title, caption, missing="no run of this method has a memory card (summary.json memory.required_bytes)")
    runs = list(dict.fromkeys(data["run_id"]))
    scale, unit = _unit(float(data["required_bytes"].max()))
    fig = MplFigure(figsize=(9.0, 1.4 + 1.2 * len(runs)), layout="constrained")
    ax = fig.subplots()
    for i, rid in enumerate(runs):
        g = data[data["run_id"] == rid]
        left, labels = 0.0, []
        for seg in g.itertuples():
            text = "n/a" if pd.isna(seg.bytes) else fmt_value(int(seg.bytes), "B")
            labels.append(f"{SEGMENT_LABELS[seg.part]} {text}")
            if pd.isna(seg.bytes) or seg.bytes <= 0:  # a negative unaccounted (parts above the peak) cannot be stacked
                continue
            ax.barh(i, seg.bytes / scale, left=left, height=0.45, color=SEGMENT_COLORS[seg.part], edgecolor="white",
                    linewidth=0.5, gid=f"part--{seg.part}--{i}")
            left += seg.bytes / scale
        req = g["required_bytes"].iloc[0]
        ax.text(left, i, f"  required {fmt_value(int(req), 'B')} ({g['phase'].iloc[0]})", va="center", fontsize=8)
        half = len(labels) // 2  # two lines, so the labels stay inside the axes
        ax.text(0, i + 0.26, " · ".join(labels[:half]) + "\n" + " · ".join(labels[half:]), va="top", fontsize=7, color="#333333")
    ax.set_yticks(range(len(runs)), runs, fontsize=8)
    ax.set_ylim(len(runs) - 0.3, -0.5)
    ax.set_xlim(0, float(data["required_bytes"].max()) / scale * 1.4)
    ax.set_xlabel(f"bytes ({unit})")
    ax.grid(True, axis="x", alpha=0.3)
    handles = [Patch(color=SEGMENT_COLORS[p], label=SEGMENT_LABELS[p]) for p in SEGMENTS]
    ax.legend(handles=handles, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(SEGMENTS), frameon=False)
    return save(fig, data, out, rel, key, title, caption)


def _setting(runs: pd.DataFrame, col: str, fallback: str | None, default: str | None) -> pd.Series:
    val = runs[col] if col in runs else pd.Series(None, index=runs.index, dtype=object)
    if fallback and fallback in runs:
        val = val.where(val.notna(), runs[fallback])
    return val.where(val.notna(), default).astype(object)


def precision_points(df: pd.DataFrame) -> pd.DataFrame:
    """task, model, method, dtype, quantization, kv_quantization, precision, label, required_bytes,
    accuracy, n, runs, pareto: one point per task × model × method × precision. required_bytes is
    the largest of the group's runs (what must be provisioned), accuracy the mean over their scored
    samples; the Pareto front is per task."""
    cols = ["task", "model", "method", *PRECISION, "precision", "label", "required_bytes", "accuracy", "n", "runs", "pareto"]
    runs = _first(df)
    runs = runs.assign(dtype=_setting(runs, "model.dtype", "dtype", "n/a"), quantization=_setting(runs, "model.quantization", None, "none"),
                       kv_quantization=_setting(runs, "method.kv_quantization", None, None))
    runs = runs[runs["required_bytes"].notna()]
    scores = cuts.scored(df[df["run_id"].isin(runs["run_id"])])
    rows = []
    key = ["task", "model", "method", *PRECISION]
    for k, g in runs.groupby(key, sort=True, dropna=False):
        s = scores[scores["run_id"].isin(g["run_id"])]["score"]
        if s.empty:
            continue
        d = dict(zip(key, k))
        kv = d["kv_quantization"]
        d["precision"] = " · ".join([str(d["dtype"])] + ([f"weights {d['quantization']}"] if d["quantization"] != "none" else [])
                                    + ([f"KV {kv}"] if isinstance(kv, str) and kv != "none" else []))
        rows.append(d | {"required_bytes": float(g["required_bytes"].max()), "accuracy": float(s.mean()), "n": int(s.size),
                         "runs": " ".join(g["run_id"])})
    out = pd.DataFrame(rows, columns=cols[:-1])
    multi_model = out.groupby("task")["model"].transform("nunique") > 1 if len(out) else pd.Series(dtype=bool)
    out["label"] = [f"{r.method} · {r.model} · {r.precision}" if m else f"{r.method} · {r.precision}"
                    for r, m in zip(out.itertuples(), multi_model)]
    out["pareto"] = False
    for _, g in out.groupby("task"):
        out.loc[g.index, "pareto"] = cuts.pareto_front(g["required_bytes"].tolist(), g["accuracy"].tolist())
    return out[cols]


def label_groups(x: pd.Series, y: pd.Series, labels: pd.Series, dx: float = 0.02, dy: float = 0.03,
                 span: float | None = None) -> list[tuple[tuple[float, float], list[str]]]:
    """Points that would print their labels on top of each other (within ``dx`` × ``span``, the
    axis width, default the data's x range, and ``dy`` in y) share one label, at the group's first point."""
    span = span or float(x.max() - x.min()) or 1.0
    groups: list[tuple[tuple[float, float], list[str]]] = []
    for xi, yi, lab in sorted(zip(x.tolist(), y.tolist(), labels.tolist()), key=lambda t: (t[1], t[0])):
        for (gx, gy), members in groups:
            if abs(xi - gx) <= dx * span and abs(yi - gy) <= dy:
                members.append(lab)
                break
        else:
            groups.append(((xi, yi), [lab]))
    return groups


def required_vs_accuracy(task: str, df: pd.DataFrame, colors: dict[str, str], out: Path, rel: str) -> Figure:
    """The index figure of one task: a point per method × precision, the Pareto front ringed and joined."""
    key = "required_vs_accuracy"
    title = f"Required bytes vs accuracy: {task}"
    caption = ("One numbered point per method × precision (model dtype, weight quantization, KV quantization; the key on the right "
               "names the numbers): the largest required_bytes "
               "of its runs against the mean accuracy of their samples; ringed points joined by the step line form the Pareto front "
               "(no other point has fewer bytes and higher accuracy).")
    pts = precision_points(df[df["task"] == task])
    if pts.empty:
        return Figure(key, title, caption, missing="no run of this task that finished ok has a memory card (summary.json memory.required_bytes)")
    scale, unit = _unit(float(pts["required_bytes"].max()))
    fig = MplFigure(figsize=(9.6, 4.2), layout="constrained")
    ax, key_ax = fig.subplots(1, 2, width_ratios=[3, 2])
    for i, p in enumerate(pts.itertuples()):
        ax.scatter([p.required_bytes / scale], [p.accuracy], s=60, color=colors.get(p.method, "#333333"), zorder=3,
                   gid=f"method--{p.method}--{i}")
    # points are numbered (one number block per cluster of coinciding points); the key on the right
    # names each number, so no label is ever printed over another
    number = {lab: str(i + 1) for i, lab in enumerate(pts["label"])}
    xmax = float(pts["required_bytes"].max()) / scale * 1.15
    for (x, y), labels in label_groups(pts["required_bytes"] / scale, pts["accuracy"], pts["label"], dx=0.04, dy=0.05, span=xmax):
        ax.annotate(",".join(number[lab] for lab in labels), (x, y), xytext=(6, 4), textcoords="offset points", fontsize=8)
    key_ax.axis("off")
    key_ax.text(0.0, 1.0, "\n".join(f"{number[lab]}  {lab}" for lab in pts["label"]), va="top", ha="left", fontsize=7.5,
                transform=key_ax.transAxes, family="monospace")
    front = pts[pts["pareto"]].sort_values("required_bytes")
    ax.step(front["required_bytes"] / scale, front["accuracy"], where="post", color="black", linewidth=1, alpha=0.6, label="Pareto front")
    ax.scatter(front["required_bytes"] / scale, front["accuracy"], s=200, facecolors="none", edgecolors="black", zorder=4)
    ax.set_xlim(0, xmax)  # from zero, so distances read as ratios; room for numbers
    ax.set_xlabel(f"required_bytes ({unit})")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.05, 1.1)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0, frameon=False)
    return save(fig, pts, out, rel, key, title, caption)


def persist_rows(df: pd.DataFrame) -> pd.DataFrame:
    """run_id, method, model, task, persisted_bytes, save_s, restore_s, ingest_s: one row per
    successful run with a persisted memory (summary.json memory.persist), ordered by method."""
    cols = ["run_id", "method", "model", "task", "persisted_bytes", "save_s", "restore_s", "ingest_s"]
    runs = _first(df)
    runs = runs[runs["persisted_bytes"].notna()].drop(columns="ingest_s").rename(columns={"persist_ingest_s": "ingest_s"})
    return runs.sort_values(["method", "model", "task", "run_id"])[cols].reset_index(drop=True)
