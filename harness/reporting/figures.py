"""The per-task figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state, no
display), each saved as SVG (shown on the page) and PNG (linked, and used by the Markdown twin), with
the plotted data beside it as a tidy CSV (one row per point, named columns).

The data of every figure is a cut of the tidy frame (``harness.reporting.cuts``); a figure is only
drawn when its data exist, otherwise the page gets a ``Figure`` with ``missing`` set to the reason.
Every series is coloured by its method (colors.method_colors) and carries an SVG id
``method--<method>--<k>`` so tests can check that a method is drawn in one colour everywhere.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib
import matplotlib.ticker
import pandas as pd

matplotlib.use("Agg")
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from matplotlib.figure import Figure as MplFigure  # noqa: E402

from harness import io  # noqa: E402
from harness.reporting import cuts  # noqa: E402
from harness.reporting.colors import model_markers  # noqa: E402
from harness.reporting.runs import Run, slug  # noqa: E402

matplotlib.rcParams["svg.hashsalt"] = "memharness-report"  # stable SVG ids between renders
RED_YELLOW_GREEN = LinearSegmentedColormap.from_list("ryg", ["#d73027", "#fee08b", "#1a9850"])
MIB = 2**20


@dataclass
class Figure:
    key: str
    title: str
    caption: str
    svg: str | None = None  # path relative to the site root
    png: str | None = None
    missing: str | None = None  # why the figure is not drawn
    csv: str | None = None  # the plotted data, one row per point


def save(fig: MplFigure, data: pd.DataFrame, out: Path, rel: str, key: str, title: str, caption: str) -> Figure:
    """Write ``<out>/<key>.svg``, ``.png`` and the plotted ``data`` as ``.csv``; paths in the result
    are relative to the site root (``rel`` = where ``out`` is below it)."""
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{key}.svg", metadata={"Date": None})
    fig.savefig(out / f"{key}.png", dpi=110, metadata={"Software": None})
    io.write_text(out / f"{key}.csv", data.to_csv(index=False))
    return Figure(key, title, caption, f"{rel}/{key}.svg", f"{rel}/{key}.png", csv=f"{rel}/{key}.csv")


class _Painter:
    """Shared state of one task's figures: the frame of its runs, colours, markers, labels, where files go."""

    def __init__(self, runs: list[Run], df: pd.DataFrame, colors: dict[str, str], out: Path, rel: str) -> None:
        self.runs, self.colors, self.out, self.rel = runs, colors, out, rel
        self.df = df[df["run_id"].isin([r.id for r in runs])]
        self.stats = cuts.per_run(self.df)
        self.by_id = {r.id: r for r in runs}
        self.markers = model_markers(r.model for r in runs)
        multi_model = len({r.model for r in runs}) > 1
        labels = {r.id: f"{r.method} · {r.model}" if multi_model else r.method for r in runs}
        dup = Counter(labels.values())
        self.labels = {k: (f"{v} ({k})" if dup[v] > 1 else v) for k, v in labels.items()}
        self.gid = Counter()

    def style(self, run: Run) -> dict:
        k = self.gid[run.method]
        self.gid[run.method] += 1
        return {"color": self.colors[run.method], "marker": self.markers[run.model], "gid": f"method--{run.method}--{k}"}

    def named(self, data: pd.DataFrame) -> pd.DataFrame:
        """``data`` (with run_id) with the run's method and model as the first columns after run_id."""
        names = pd.DataFrame([{"run_id": r.id, "method": r.method, "model": r.model} for r in self.runs],
                             columns=["run_id", "method", "model"])
        return names.merge(data, on="run_id", how="inner")

    def save(self, fig: MplFigure, data: pd.DataFrame, key: str, title: str, caption: str) -> Figure:
        return save(fig, self.named(data), self.out, self.rel, key, title, caption)


def _legend(ax) -> None:
    """Outside the axes on the right, so many series never hide the data."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)


def _reason(p: _Painter, metric: str, what: str) -> str:
    if not p.runs:
        return "no successful runs for this task"
    if "context_length" not in p.df or p.df["context_length"].isna().all():
        return "the samples have no context_length slice"
    reasons = sorted({r for s in p.stats.values() if (r := s.stat(metric)[1])})
    return f"no {what} measured" + (f" ({'; '.join(reasons)})" if reasons else "")


def heatmap(p: _Painter) -> Figure:
    title = "Accuracy by depth × context length"
    caption = "Mean score per cell (repetition 0): red = 0, yellow = 0.5, green = 1; one panel per method."
    cells = cuts.grid(p.df)
    grids = [(r, cells[cells["run_id"] == r.id]) for r in p.runs if (cells["run_id"] == r.id).any()]
    if not grids:
        return Figure("heatmap", title, caption, missing="the samples do not have both context_length and depth slices (not a needle-style task)")
    ncols = min(3, len(grids))
    nrows = math.ceil(len(grids) / ncols)
    fig = MplFigure(figsize=(4.2 * ncols + 0.8, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for ax, (run, g) in zip(axes.flat, grids):
        mat = g.pivot(index="depth", columns="context_length", values="accuracy").sort_index().sort_index(axis=1)  # [depths, lengths]
        image = ax.imshow(mat.to_numpy(dtype=float), cmap=RED_YELLOW_GREEN, vmin=0, vmax=1, aspect="auto", origin="upper")
        ax.set_xticks(range(mat.shape[1]), [f"{n:g}" for n in mat.columns])
        ax.set_yticks(range(mat.shape[0]), [f"{d:g}%" for d in mat.index])
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("depth")
        ax.set_title(p.labels[run.id], color=p.colors[run.method], fontweight="bold", gid=p.style(run)["gid"])
        for i, row in enumerate(mat.to_numpy(dtype=float)):
            for j, v in enumerate(row):
                ax.text(j, i, "n/a" if math.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8)
    for ax in list(axes.flat)[len(grids):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes, label="accuracy", shrink=0.8)
    return p.save(fig, cells, "heatmap", title, caption)


def vs_length(p: _Painter, key: str, title: str, metrics: list[tuple[str, str, str]], ylabel: str,
              scale: Callable[[float], float], logy: bool, caption: str) -> Figure:
    """One line per run (and per metric in ``metrics``: (metric, stat, line style)) vs context length."""
    fig = MplFigure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    hidden, data = [], []
    pts = {metric: cuts.by_length(p.df, metric, stat) for metric, stat, _ in metrics}
    for run in p.runs:
        for metric, stat, ls in metrics:
            mine = pts[metric][pts[metric]["run_id"] == run.id]
            if logy and len(mine) and (mine["value"] <= 0).all():
                hidden.append(p.labels[run.id])  # a log axis cannot show 0; say so in the caption
                continue
            if mine.empty:
                continue
            label = p.labels[run.id] if metric == metrics[0][0] else None  # line style, not a legend entry, tells metrics apart
            ax.plot(mine["context_length"], [scale(y) for y in mine["value"]], linestyle=ls, label=label, **p.style(run))
            data.append(mine.assign(metric=metric, stat=stat))
    if not data:
        return Figure(key, title, caption, missing=_reason(p, metrics[0][0], ylabel.split(" (")[0]))
    ax.set_xscale("log", base=2)
    ticks = sorted(set(pts[metrics[0][0]]["context_length"]))
    ax.set_xticks(ticks, [f"{n:g}" for n in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("context length (tokens, log scale)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3, which="both")
    if len(metrics) > 1:
        for metric, _, ls in metrics:
            ax.plot([], [], color="black", linestyle=ls, label=metric)
    _legend(ax)
    if hidden:
        caption += f" Not on the log axis because the value is 0 at every length: {', '.join(sorted(set(hidden)))}."
    table = pd.concat(data)[["run_id", "metric", "stat", "context_length", "value"]]
    return p.save(fig, table, key, title, caption)


def pareto(p: _Painter) -> Figure:
    title = "Accuracy vs state bytes"
    caption = ("One point per run (mean accuracy, mean state_bytes); ringed points joined by the step line form the Pareto front. "
               "The x axis is logarithmic above the smallest non-zero state and linear below it, so a run with 0 bytes of state sits at 0.")
    pts = pd.DataFrame([{"run_id": r.id, "state_bytes": p.stats[r.id].stat("state_bytes")[0], "accuracy": p.stats[r.id].accuracy.get("mean")}
                        for r in p.runs if r.id in p.stats], columns=["run_id", "state_bytes", "accuracy"]).dropna()
    if pts.empty:
        return Figure("pareto", title, caption, missing="no run has both an accuracy and a mean state_bytes")
    pts["pareto"] = cuts.pareto_front(pts["state_bytes"].tolist(), pts["accuracy"].tolist())
    fig = MplFigure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    for pt in pts.itertuples():
        run = p.by_id[pt.run_id]
        ax.scatter([pt.state_bytes / MIB], [pt.accuracy], s=60, label=p.labels[run.id], zorder=3, **p.style(run))
    front = pts[pts["pareto"]].sort_values("state_bytes")
    xs = (front["state_bytes"] / MIB).tolist()
    ax.step(xs, front["accuracy"], where="post", color="black", linewidth=1, alpha=0.6, label="Pareto front")
    ax.scatter(xs, front["accuracy"], s=200, facecolors="none", edgecolors="black", zorder=4)
    positive = [b / MIB for b in pts["state_bytes"] if b > 0]
    ax.set_xscale("symlog", linthresh=min(positive) if positive else 1e-3, linscale=0.5)
    ax.set_xlabel("state_bytes, mean (MiB, symmetric log scale)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(True, alpha=0.3, which="both")
    _legend(ax)
    return p.save(fig, pts, "pareto", title, caption)


def itl_box(p: _Painter) -> Figure:
    title = "Inter-token latency distribution"
    caption = "itl_s of every generated-token gap of every sample and repetition: box = p25–p75, line = p50, whiskers = 1.5 × IQR, dots = the gaps beyond (log scale)."
    gaps = cuts.itl_gaps(p.df)
    data = [(r, (gaps.loc[gaps["run_id"] == r.id, "itl_s"] * 1e3).tolist()) for r in p.runs]
    data = [(r, v) for r, v in data if v]
    if not data:
        return Figure("itl", title, caption, missing=_reason(p, "itl_s", "inter-token latency"))
    fig = MplFigure(figsize=(max(5.0, 1.1 * len(data) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    pos = list(range(1, len(data) + 1))
    box = ax.boxplot([v for _, v in data], positions=pos, patch_artist=True, widths=0.5, showfliers=True,
                     medianprops={"color": "black"}, flierprops={"markersize": 3})
    for patch, (r, _) in zip(box["boxes"], data):
        patch.set_facecolor(p.colors[r.method])
        patch.set_gid(p.style(r)["gid"])
    ax.set_xticks(pos, [p.labels[r.id] for r, _ in data], rotation=20, ha="right")
    ax.set_ylabel("itl_s (ms)")
    ax.set_yscale("log")
    ax.grid(True, axis="y", alpha=0.3, which="both")
    return p.save(fig, gaps, "itl", title, caption)


def _same(v: float) -> float:
    return v


def task_figures(task: str, runs: list[Run], df: pd.DataFrame, colors: dict[str, str], site: Path) -> list[Figure]:
    """Draw every figure of one task into ``site/figures/<task>/``; successful runs with samples only
    (``df``: the report's tidy frame, built with the token gaps)."""
    rel = f"figures/{slug(task)}"
    p = _Painter([r for r in runs if r.ok and r.samples], df, colors, site / rel, rel)
    return [
        heatmap(p),
        vs_length(p, "accuracy_vs_length", "Accuracy vs context length", [("score", "mean", "-")], "accuracy",
                  _same, False, "Mean score per context length (repetition 0)."),
        vs_length(p, "state_vs_length", "State bytes vs context length", [("state_bytes", "mean", "-")], "state_bytes (MiB, log scale)",
                  lambda b: b / MIB, True, "Mean state_bytes per context length, log–log."),
        vs_length(p, "ttft_vs_length", "TTFT vs context length", [("ttft_query_s", "p50", "-"), ("ttft_cold_s", "p50", "--")], "TTFT p50 (ms, log scale)",
                  lambda s: s * 1e3, True, "p50 of ttft_query_s (solid) and ttft_cold_s (dashed) per context length."),
        vs_length(p, "decode_vs_length", "Decode throughput vs context length", [("decode_tok_per_s", "mean", "-")], "decode_tok_per_s (tok/s)",
                  _same, False, "Mean decode_tok_per_s per context length."),
        pareto(p),
        itl_box(p),
    ]
