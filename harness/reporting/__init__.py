"""Static HTML + Markdown report over run folders (``python -m harness.report``).

Split by concern so each piece stays small: ``runs`` reads run folders, ``tidy`` turns them into one
pandas frame (a row per sample × repetition × run), ``cuts`` computes every number across runs from
that frame, ``memory`` draws the memory card figures, ``fmt`` formats values, ``tables`` defines
columns, ``figures`` draws, ``glossary`` parses the metric definitions, ``pages`` builds template
contexts, ``site`` renders and writes the site. Templates, CSS and JS
live in the ``reports`` package.
"""

from __future__ import annotations

from harness.reporting.runs import ReportError
from harness.reporting.site import Report, build_report

__all__ = ["Report", "ReportError", "build_report"]
