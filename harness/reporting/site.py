"""Writing the site: every page as HTML (autoescaped Jinja2) and as a Markdown twin, the figures,
the stylesheet, and a copy of each run's raw files, all under one folder with relative links only,
so it opens from file:// and can be copied or archived as is.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Sequence

import jinja2
from markupsafe import Markup, escape

from harness import io
from harness.reporting import cuts, glossary, memory, pages, tidy
from harness.reporting.colors import method_colors
from harness.reporting.figures import task_figures
from harness.reporting.fmt import fence, md, tidy_markdown
from harness.reporting.runs import MARKER, RAW_FILES, Run, load_runs, slug

OWNED = ("tasks", "methods", "runs", "figures", "static")


def _template(name: str) -> str:
    return files("reports").joinpath("templates", name).read_text(encoding="utf-8")


def _static(name: str) -> str:
    return files("reports").joinpath("static", name).read_text(encoding="utf-8")


def environments() -> dict[str, jinja2.Environment]:
    """Autoescape on for both formats; Markdown additionally escapes Markdown syntax (finalize)."""
    common: dict[str, Any] = {"loader": jinja2.FunctionLoader(_template), "autoescape": True, "undefined": jinja2.StrictUndefined,
                              "trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True}
    out = {"html": jinja2.Environment(**common), "md": jinja2.Environment(finalize=md, **common)}
    out["md"].filters["fence"] = fence
    return out


@dataclass
class Report:
    out: Path
    runs: list[Run]
    pages: list[Path] = field(default_factory=list)
    seconds: float = 0.0


class _Writer:
    def __init__(self, out: Path, runs: list[Run], colors: dict[str, str]) -> None:
        self.out, self.colors, self.envs = out, colors, environments()
        self.anchors = glossary.anchors()
        # metric identifiers (with "_") are linked wherever they appear in running text
        ids = sorted((a for a in self.anchors if "_" in a), key=len, reverse=True)
        self.ident = re.compile(r"\b(" + "|".join(map(re.escape, ids)) + r")\b")
        self.globals = {"colors": colors, "slug": slug, "sort_js": Markup(_static("sort.js")), "inline": glossary.inline,
                        "nav_tasks": sorted({r.task for r in runs}), "nav_methods": sorted({r.method for r in runs})}
        self.written: list[Path] = []

    def linkterms(self, text: str, root: str, ext: str) -> Markup:
        """Escape ``text`` for ``ext`` and link every metric identifier in it to the glossary."""
        safe = str(escape(text)) if ext == "html" else str(md(text))

        def link(m: re.Match) -> str:
            href = f"{root}glossary.{ext}#{m.group(1)}"
            return f'<a class="term" href="{href}">{m.group(1)}</a>' if ext == "html" else f"[{m.group(1)}]({href})"

        return Markup(self.ident.sub(link, safe))

    def page(self, path: str, template: str, ctx: dict[str, Any]) -> None:
        """Render ``template`` to ``<path>.html`` and ``<path>.md`` (path relative to the root)."""
        depth = path.count("/")
        root = "../" * depth
        for ext, env in self.envs.items():
            def url(target: str, ext: str = ext) -> Markup:
                return Markup(f"{root}{target}.{ext}")

            def term(name: str, ext: str = ext) -> Markup | None:
                return Markup(f"{root}glossary.{ext}#{name}") if name in self.anchors else None

            def linkterms(text: str, ext: str = ext) -> Markup:
                return self.linkterms(text, root, ext)

            text = env.get_template(f"{template}.{ext}.j2").render(
                **ctx, **self.globals, root=Markup(root), url=url, term=term, linkterms=linkterms, ext=ext, page_path=Markup(path))
            if ext == "md":
                text = tidy_markdown(text)
            target = self.out / f"{path}.{ext}"
            io.write_text(target, text)
            self.written.append(target)


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    if (out / MARKER).exists():
        for name in OWNED:
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by python -m harness.report; re-rendering clears tasks/ methods/ runs/ figures/ static/\n")
    (out / "static").mkdir(exist_ok=True)
    (out / "static" / "style.css").write_text(_static("style.css"), encoding="utf-8")


def build_report(paths: Sequence[Path | str], out: Path | str) -> Report:
    """Render every run found under ``paths`` into the site folder ``out``."""
    t0 = time.perf_counter()
    out = Path(out)
    runs = load_runs(paths, exclude=out)
    _prepare(out)
    df = tidy.frame(runs, itl_gaps=True)  # every number below is cut from this one frame
    stats = cuts.per_run(df)
    colors = method_colors(r.method for r in runs)
    w = _Writer(out, runs, colors)
    tasks = pages.by_task(runs)
    precision = [memory.required_vs_accuracy(name, df, colors, out / "figures" / slug(name), f"figures/{slug(name)}") for name in tasks]
    w.page("index", "index", pages.index(runs, stats, precision, memory.persist_rows(df)))
    for name, rs in tasks.items():
        w.page(f"tasks/{slug(name)}", "task", pages.task(name, rs, task_figures(name, rs, df, colors, out), stats))
    for name in sorted({r.method for r in runs}):
        rel = f"figures/methods/{slug(name)}"
        card = memory.card_bars(df[df["method"] == name], out / rel, rel)
        w.page(f"methods/{slug(name)}", "method", pages.method(name, [r for r in runs if r.method == name], stats, card))
    for r in runs:
        raw = []
        for f in RAW_FILES:
            if (r.path / f).is_file():
                (out / "runs" / r.id).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(r.path / f, out / "runs" / r.id / f)
                raw.append(f)
        w.page(f"runs/{r.id}", "run", pages.run_page(r, raw, stats))
    w.page("glossary", "glossary", {"title": "Glossary", "documents": glossary.documents(), "markdown": Markup(glossary.markdown())})
    return Report(out, runs, w.written, time.perf_counter() - t0)
