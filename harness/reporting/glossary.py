"""The glossary: the project's metric definitions (reports/templates/metrics.md, a verbatim copy of
the shared definitions, shipped with the package) plus the report's own terms.

Both sources are small Markdown documents of headings, paragraphs and ``| name | definition |``
tables. They are parsed here (a tiny subset of Markdown, so no extra dependency) into blocks the
glossary template renders, and every name in a table becomes an anchor that metric names on other
pages link to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.resources import files

from markupsafe import Markup, escape

SOURCES = ("metrics.md", "report_terms.md")


@dataclass
class Block:
    kind: str  # heading | para | table
    text: str = ""
    level: int = 0
    rows: list[list[str]] = field(default_factory=list)  # table rows, header first
    anchors: list[list[str]] = field(default_factory=list)  # per body row: anchor names


def read_source(name: str) -> str:
    return files("reports").joinpath("templates", name).read_text(encoding="utf-8")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def names_in(cell: str) -> list[str]:
    """Anchor names of a definition row: "gpu_a / gpu_b" names two metrics, "p50 / p90" two; "n/a" one."""
    return [n.strip(" `*") for n in cell.split(" / ") if n.strip(" `*")]


def parse(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith("#"):
            head = line.lstrip("#")
            level = len(line) - len(head)
            # a heading whose parenthesis continues on the next line (as in the Timing heading)
            while head.count("(") > head.count(")") and i + 1 < len(lines) and lines[i + 1].strip():
                i += 1
                head += " " + lines[i].strip()
            blocks.append(Block("heading", head.strip(), level))
            i += 1
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                if not re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", lines[i]):
                    rows.append(_cells(lines[i]))
                i += 1
            blocks.append(Block("table", rows=rows, anchors=[names_in(r[0]) for r in rows[1:]]))
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith("#") and not lines[i].lstrip().startswith("|"):
                para.append(lines[i].strip())
                i += 1
            blocks.append(Block("para", " ".join(para)))
    return blocks


def inline(text: str) -> Markup:
    """Escape, then render `code` and **bold**, the only inline Markdown the sources use."""
    out = str(escape(text))
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return Markup(out)


def documents() -> list[tuple[str, list[Block]]]:
    return [(name, parse(read_source(name))) for name in SOURCES]


def anchors() -> set[str]:
    return {a for _, blocks in documents() for b in blocks for names in b.anchors for a in names}


def markdown() -> str:
    """The Markdown twin: the sources verbatim, with an HTML anchor before each defined name."""
    out = []
    for name in SOURCES:
        for line in read_source(name).splitlines():
            if line.lstrip().startswith("|") and not re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", line):
                first = _cells(line)[0]
                names = names_in(first)
                if names and first != "name":
                    line = line.replace("|", "| " + "".join(f'<a id="{a}"></a>' for a in names), 1)
            out.append(line)
        out.append("")
    return "\n".join(out).rstrip() + "\n"
