"""One colour per method across every page and figure of a report.

The palette is fixed and assigned in sorted method-name order over the whole report, so a method
keeps its colour from the leaderboard swatch to the last figure; the same set of methods always
gets the same colours.
"""

from __future__ import annotations

from typing import Iterable

# matplotlib's tab10, then tab20's lighter partners: distinguishable and colour-blind tolerable
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def method_colors(methods: Iterable[str]) -> dict[str, str]:
    """{method: "#rrggbb"} for every method, palette order = sorted names (cycles past 20)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(set(methods)))}


def model_markers(models: Iterable[str]) -> dict[str, str]:
    """{model: marker}: models share a method's colour and differ by marker and line style."""
    return {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(sorted(set(models)))}
