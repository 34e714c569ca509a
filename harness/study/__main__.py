"""``python -m harness.study [run or sweep folders...] --out docs/study``: render the study site.

Part 1 (mechanism) is read from ``mechanism_*.csv`` in ``--mechanism`` (default: ``--out``), written
by ``python -m harness.study.mechanism``; parts 2–5 from the run folders found under the given
folders (recursively). Missing parts render as "not run yet" with their command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from harness.study.site import build_study


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.study", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="*", type=Path, help="run or sweep folders (searched recursively for summary.json)")
    p.add_argument("--out", type=Path, required=True, help="site folder (index.html, index.md, figures/, CSVs)")
    p.add_argument("--mechanism", type=Path, default=None, help="folder with mechanism_capacity.csv (default: --out)")
    a = p.parse_args(argv)
    missing = [str(f) for f in a.folders if not f.exists()]
    if missing:
        print(f"error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        study = build_study(a.folders, a.out, a.mechanism)
    except NotADirectoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = [s.id for s in study.sections if s.ran]
    print(f"study: {len(done)} of {len(study.sections)} sections rendered ({', '.join(done)}) in {study.seconds:.1f} s")
    print(f"open {(study.out / 'index.html').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
