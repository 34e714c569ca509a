"""Import a script from benchmarks/ (not a package) by file name, for the tests of its functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def script(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:  # scripts import their siblings (e.g. precision_summary → results_table)
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
