"""The study's figures: matplotlib object API on the Agg canvas, the report package's colours and
file conventions (SVG shown, PNG for the Markdown twin), and each figure's data as a tidy CSV
beside it (one row per point, named columns), so every plotted number can be checked.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure as MplFigure

from harness.reporting.colors import PALETTE, method_colors
from harness.reporting.figures import Figure, save  # also sets the Agg backend and stable SVG ids
from harness.study.mechanism import iter_settings, settings_label

LINESTYLES = ["-", "--", ":", "-."]
PREDICTED = "predicted full KV"  # the dashed line's name in legends and CSVs


StudyFigure = Figure  # a report figure: SVG, PNG and the plotted data as CSV, paths relative to the site root


class Canvas:
    """Where one section's figures go: ``<site>/figures/<section>/<key>.{svg,png,csv}``."""

    def __init__(self, site: Path, section: str) -> None:
        self.rel = f"figures/{section}"
        self.out = site / self.rel

    def save(self, fig: MplFigure, data: pd.DataFrame, key: str, title: str, caption: str) -> StudyFigure:
        return save(fig, data, self.out, self.rel, key, title, caption)


def _axes(w: float = 6.4, h: float = 4.0):
    fig = MplFigure(figsize=(w, h), layout="constrained")
    return fig, fig.subplots()


def _legend(ax) -> None:
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)


def _log2_x(ax, ticks) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ticks), [f"{t:g}" for t in ticks])
    ax.minorticks_off()


def mechanism_rule(c: Canvas, cells: pd.DataFrame, rule: str) -> StudyFigure:
    """Accuracy vs N for one rule: colour = r, line style = β, band = 95 % interval, grey = chance."""
    data = cells[cells["rule"] == rule].sort_values(["beta", "r", "n_pairs"])
    fig, ax = _axes()
    ranks = sorted(data["r"].unique())
    for j, (_, beta, g) in enumerate(iter_settings(data)):
        for i, r in enumerate(ranks):
            s = g[g["r"] == r]
            label = f"r = {r}" + ("" if beta is None else f", β = {beta:g}")
            ax.plot(s["n_pairs"], s["accuracy"], marker="o", ms=3, color=PALETTE[i], linestyle=LINESTYLES[j % 4], label=label,
                    gid=f"rule--{rule}--r{r}--{j}")
            ax.fill_between(s["n_pairs"], s["ci_low"], s["ci_high"], color=PALETTE[i], alpha=0.15, linewidth=0)
    ns = sorted(data["n_pairs"].unique())
    ax.plot(ns, [1 / n for n in ns], color="#7f7f7f", linestyle=":", label="chance (1/N)")
    _log2_x(ax, ns)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("pairs written N (log scale)")
    ax.set_ylabel("recall accuracy")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    name = {"linear": "linear attention", "delta": "plain delta rule", "deltamem": "δ-mem's update"}[rule]
    return c.save(fig, data, f"mechanism_{rule}", f"Capacity of {name}",
                  "Mean over all pairs and trials; band = 95% bootstrap interval over trials; dotted grey = chance (1/N).")


def mechanism_age(c: Canvas, ages: pd.DataFrame, n_pairs: int) -> StudyFigure:
    """δ-mem: accuracy by the age of the pair (0 = written last) at one N, a panel per β."""
    data = ages[ages["n_pairs"] == n_pairs].sort_values(["beta", "r", "age"])
    betas = sorted(data["beta"].unique())
    fig = MplFigure(figsize=(4.2 * len(betas) + 1.2, 3.6), layout="constrained")
    axes = fig.subplots(1, len(betas), squeeze=False)[0]
    for ax, beta in zip(axes, betas):
        g = data[data["beta"] == beta]
        for i, r in enumerate(sorted(g["r"].unique())):
            s = g[g["r"] == r]
            ax.plot(s["age"], s["accuracy"], color=PALETTE[i], label=f"r = {r}", gid=f"age--b{beta:g}--r{r}")
        ax.axhline(1 / n_pairs, color="#7f7f7f", linestyle=":", label="chance")
        ax.set_title(f"{settings_label('deltamem', beta)}, N = {n_pairs}")
        ax.set_xlabel("age: pairs written after it (0 = newest)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("recall accuracy")
    _legend(axes[-1])
    return c.save(fig, data, "mechanism_age", f"δ-mem's update: accuracy by age of the pair (N = {n_pairs})",
                  "Mean over trials of whether the pair written at that age is recalled; the decay λ = 1 − β fades older pairs.")


def lines(c: Canvas, data: pd.DataFrame, x: str, y: str, key: str, title: str, caption: str, xlabel: str, ylabel: str,
          logy: bool = False, band: bool = False, predicted: pd.DataFrame | None = None) -> StudyFigure:
    """One line per variant (report colours); x on a log2 axis; optional 95 % band and a dashed
    predicted curve per model (``predicted`` with columns x, y, model), saved in the figure's CSV
    as variant ``predicted full KV``."""
    colors = method_colors(data["variant"].unique())
    fig, ax = _axes()
    for v, g in data.sort_values(x).groupby("variant", sort=True):
        ax.plot(g[x], g[y], marker="o", ms=3, color=colors[v], label=v, gid=f"variant--{v}")
        if band and {"ci_low", "ci_high"} <= set(g):
            ok = g["ci_low"].notna()
            ax.fill_between(g.loc[ok, x], g.loc[ok, "ci_low"], g.loc[ok, "ci_high"], color=colors[v], alpha=0.12, linewidth=0)
    _log2_x(ax, sorted(data[x].dropna().unique()))  # ticks at the measured points only
    if predicted is not None and len(predicted):
        predicted = predicted.assign(variant=PREDICTED)
        if "model" not in predicted:
            predicted["model"] = None
        several = predicted["model"].nunique() > 1
        for model, g in predicted.groupby("model", sort=True, dropna=False):
            ax.plot(g[x], g[y], color="black", linestyle="--", linewidth=1, label=f"{PREDICTED} ({model})" if several else PREDICTED)
        data = pd.concat([data, predicted], ignore_index=True)
    if logy:
        ax.set_yscale("log")
    else:
        ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3, which="both")
    _legend(ax)
    return c.save(fig, data, key, title, caption)


def accuracy_vs_bytes(c: Canvas, data: pd.DataFrame, same_bytes: list[tuple[str, str]]) -> StudyFigure:
    """A point per variant × setting: accuracy vs mean state bytes; ``same_bytes`` pairs of variants
    with (nearly) the same bytes are joined by a thin line per setting."""
    colors = method_colors(data["variant"].unique())
    fig, ax = _axes()
    for v, g in data.groupby("variant", sort=True):
        ax.scatter(g["state_bytes"] / 2**20, g["accuracy"], s=30, color=colors[v], label=v, gid=f"variant--{v}", zorder=3)
    for a, b in same_bytes:
        for n, g in data[data["variant"].isin([a, b])].groupby("num_facts"):
            if len(g) == 2:
                ax.plot(g["state_bytes"] / 2**20, g["accuracy"], color="#57606a", linewidth=0.8, alpha=0.6)
    positive = data["state_bytes"][data["state_bytes"] > 0] / 2**20
    ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1e-3)  # 0 bytes (no memory) sits at 0
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("state_bytes, mean (MiB, symmetric log scale)")
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3, which="both")
    _legend(ax)
    return c.save(fig, data, "capacity_vs_bytes", "Accuracy vs state bytes",
                  "A point per method × number of facts; grey lines join same-bytes comparisons at each number of facts.")


def bars(c: Canvas, data: pd.DataFrame, key: str, title: str, caption: str) -> StudyFigure:
    """Mean score with 95 % interval per variant, a group per task."""
    colors = method_colors(data["variant"].unique())
    tasks = sorted(data["task"].unique())
    variants = sorted(data["variant"].unique())
    fig, ax = _axes(max(5.0, 1.6 * len(tasks) + 3), 4.0)
    w = 0.8 / max(1, len(variants))
    for j, v in enumerate(variants):
        g = data[data["variant"] == v].set_index("task").reindex(tasks)
        xs = [i + (j - (len(variants) - 1) / 2) * w for i in range(len(tasks))]
        err = [(g["accuracy"] - g["ci_low"]).fillna(0).clip(lower=0), (g["ci_high"] - g["accuracy"]).fillna(0).clip(lower=0)]
        ax.bar(xs, g["accuracy"].fillna(0), width=w, color=colors[v], label=v, yerr=err, capsize=2, gid=f"variant--{v}")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("mean score")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax)
    return c.save(fig, data, key, title, caption)
