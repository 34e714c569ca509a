"""``python -m harness.report <run or sweep folders...> --out <dir>``: render every run found under
the folders (recursively; a run folder holds summary.json) into a static site with Markdown twins.

Kept apart from the harness CLI so reports can be rebuilt from results alone, on any machine,
without loading a model; see reports/README.md for what each page shows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from harness.reporting import ReportError, build_report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="run folders or sweep folders (searched recursively for summary.json)")
    p.add_argument("--out", type=Path, required=True, help="folder to write the site into (created; a previous report there is replaced)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = build_report(args.folders, args.out)
    except (ReportError, NotADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bad = sum(not r.ok for r in report.runs)
    print(f"report: {len(report.runs)} runs ({bad} not ok), {len(report.pages)} pages in {report.seconds:.1f} s")
    print(f"open {(report.out / 'index.html').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
