"""``python -m harness.study [run or sweep folders...] --out docs/study``: render the study site.

Part 1 (mechanism) is read from ``mechanism_*.csv`` in ``--mechanism`` (default: ``--out``), written
by ``python -m harness.study.mechanism``; parts 2–5 from the run folders found under the given
folders (recursively). Missing parts render as "not run yet" with their command.

A run belongs to the part named by its config's ``study.part`` (the ``experiment=study_*`` presets
set it), else to the part its folder is assigned on the command line as ``PART=FOLDER``, e.g.
``precision=runs/sweeps/precision_85a7f0cd`` for the memory card's ``experiment=precision`` sweep,
else to its task's part (kv_recall: capacity, passkey: cost, multi_session and fact_update: agent).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from harness.study.site import build_study

PARTS = ("capacity", "cost", "agent", "precision")  # the language-model parts a folder can be assigned to


def _shown(args: list[str]) -> str:
    """The render command as the page shows it: paths relative to the working folder, never a
    local absolute path (one outside it is shown by its name)."""
    cwd, out = Path.cwd().resolve(), []
    for arg in args:
        head, sep, tail = arg.rpartition("=") if "=" in arg else ("", "", arg)
        p = Path(tail)
        if p.is_absolute():
            tail = str(p.resolve().relative_to(cwd)) if p.resolve().is_relative_to(cwd) else p.name
        out.append(f"{head}{sep}{tail}")
    return " ".join(["python -m harness.study", *out])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.study", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="*", help="run or sweep folders (searched recursively for summary.json); "
                   f"PART=FOLDER assigns the runs there without study.part to PART ({', '.join(PARTS)})")
    p.add_argument("--out", type=Path, required=True, help="site folder (index.html, index.md, figures/, CSVs)")
    p.add_argument("--mechanism", type=Path, default=None, help="folder with mechanism_capacity.csv (default: --out)")
    a = p.parse_args(argv)
    plain: list[Path] = []
    assign: dict[Path, str] = {}
    for arg in a.folders:
        part, sep, folder = arg.partition("=")
        if sep and part in PARTS:
            assign[Path(folder)] = part
        elif sep and not Path(arg).exists() and "/" not in part:
            print(f"error: unknown study part {part!r} in {arg!r}; choose from {', '.join(PARTS)}", file=sys.stderr)
            return 2
        else:
            plain.append(Path(arg))
    missing = [str(f) for f in [*plain, *assign] if not f.exists()]
    if missing:
        print(f"error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        study = build_study(plain, a.out, a.mechanism, assign, command=_shown(sys.argv[1:] if argv is None else list(argv)))
    except NotADirectoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = [s.id for s in study.sections if s.ran]
    print(f"study: {len(done)} of {len(study.sections)} sections rendered ({', '.join(done)}) in {study.seconds:.1f} s")
    print(f"open {(study.out / 'index.html').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
