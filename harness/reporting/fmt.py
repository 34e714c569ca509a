"""Turning raw values into what a page shows, in one place so every page agrees.

Bytes stay integers in the data and are shown as MiB/GiB; seconds are shown as ms below 1 s; a
missing value is "n/a" with its reason attached (tooltip + numbered note), never 0. Markdown output
escapes every untrusted string because Markdown viewers pass raw HTML through.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from harness.stats import interval_label, sample_count

MIB, GIB = 2**20, 2**30
#: tooltips of accuracy cells (the glossary defines each method under its ci_method name)
METHOD_TITLES = {
    "wilson": "Wilson score interval (0/1 scores, independent samples)",
    "wilson_clustered": "Wilson score interval on the effective n of samples that share contexts",
    "bootstrap": "percentile bootstrap of the mean (2000 resamples, seed 0)",
    "cluster_bootstrap": "percentile bootstrap over contexts (2000 resamples, seed 0)",
}


def unit_of(metric: str) -> str:
    """The unit a metric is reported in, from its name (the harness's naming convention)."""
    if metric.endswith("tok_per_s"):
        return "tok/s"
    if metric.endswith("_bytes") or metric.endswith("_bytes_peak") or metric.endswith("_bytes_max"):
        return "B"
    if metric.endswith("_s"):
        return "s"
    if metric.startswith("energy_j") or metric.startswith("j_per_"):
        return "J"
    if metric.endswith("_pct"):
        return "%"
    return ""


def num(x: float) -> str:
    """Three significant figures without scientific notation for everyday magnitudes."""
    if isinstance(x, int) or x == 0:
        return f"{x:,}" if isinstance(x, int) else "0"
    ax = abs(x)
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:#.3g}" if ax >= 1e-4 else f"{x:.2e}"


def fmt_value(v: Any, unit: str = "") -> str:
    """A value with its display unit; the caller handles None (see Notes.cell)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if unit == "B":
        return f"{num(v / GIB)} GiB" if abs(v) >= GIB else f"{num(v / MIB)} MiB"
    if unit == "s":
        return f"{num(v * 1e3)} ms" if abs(v) < 1 else f"{num(v)} s"
    if unit == "%":
        return f"{v:.1f}%"
    return f"{num(v)} {unit}".rstrip()


def raw_bytes(v: float) -> str:
    """The exact byte count for a tooltip (means of byte counts may be fractional)."""
    return f"{int(v):,} B" if float(v).is_integer() else f"{v:,.1f} B"


@dataclass(frozen=True)
class Cell:
    """A table cell: display text, a raw sort key, a tooltip, and for n/a its reason + note number."""

    text: str
    sort: float | None = None
    title: str | None = None
    reason: str | None = None
    note: int | None = None

    @property
    def na(self) -> bool:
        return self.reason is not None


class Notes:
    """Numbered footnotes of one page: each distinct n/a reason gets one number."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def na(self, reason: str | None) -> Cell:
        reason = reason or "not measured"
        if reason not in self.reasons:
            self.reasons.append(reason)
        return Cell("n/a", None, reason, reason, self.reasons.index(reason) + 1)

    def cell(self, v: Any, unit: str = "", reason: str | None = None, suffix: str = "") -> Cell:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return self.na(reason)
        title = raw_bytes(v) if unit == "B" and isinstance(v, (int, float)) else None
        sort = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
        return Cell(fmt_value(v, unit) + suffix, sort, title)

    def accuracy(self, acc: dict[str, Any]) -> Cell:
        """"0.750 (Wilson 95% CI 0.41–0.93), n=12 in 3 contexts"; "1.000 (n=1, no CI)" without an
        interval, the reason in the tooltip; the method's full name in the tooltip otherwise."""
        mean, ci = acc.get("mean"), acc.get("ci95") or [None, None]
        if mean is None:
            return self.na("no scored samples")
        if None in ci:
            return Cell(f"{mean:.3f} ({sample_count(acc)}, no CI)", float(mean), acc.get("ci95_reason") or "no interval recorded")
        label = interval_label(acc)
        title = METHOD_TITLES.get(str(acc.get("ci_method")), "percentile bootstrap (recorded before ci_method)")
        if acc.get("n_eff") is not None:
            title += f", effective n = {acc['n_eff']:.1f}"
        return Cell(f"{mean:.3f} ({(label + ' ') if label else ''}95% CI {ci[0]:.3f}–{ci[1]:.3f}), {sample_count(acc)}", float(mean), title)

    def items(self) -> list[tuple[int, str]]:
        return list(enumerate(self.reasons, 1))


_MD_SPECIAL = re.compile(r"([\\`*\[\]|])")


def md(value: Any) -> Markup:
    """Escape a value for Markdown text or a table cell: HTML-escaped (viewers render raw HTML),
    Markdown punctuation backslash-escaped, newlines as <br>."""
    if isinstance(value, Markup):
        return value
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return Markup(text.replace("\r\n", "\n").replace("\n", "<br>"))


def fence(text: str, lang: str = "") -> Markup:
    """A fenced Markdown code block that no backtick run inside ``text`` can close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    bar = "`" * max(3, longest + 1)
    return Markup(f"{bar}{lang}\n{text.rstrip()}\n{bar}")


def truncate(text: str, limit: int = 160) -> tuple[str, bool]:
    """(shown part, whether it was cut); the page offers the full text in a <details>."""
    text = str(text)
    return (text, False) if len(text) <= limit else (text[:limit] + "…", True)


def tidy_markdown(text: str) -> str:
    """Collapse runs of blank lines left by template control blocks, outside code fences only."""
    out: list[str] = []
    fence_bar: str | None = None
    for line in text.splitlines():
        bar = re.match(r"^(`{3,})", line)
        if bar and (fence_bar is None or bar.group(1) == fence_bar):
            fence_bar = None if fence_bar else bar.group(1)
        if fence_bar is None and not line.strip() and (not out or not out[-1].strip()):
            continue
        out.append(line.rstrip() if fence_bar is None else line)
    return "\n".join(out).rstrip() + "\n"
