"""Run ``python -m harness ...`` in a subprocess for the sweep / CLI tests (tiny model, offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], cwd: Path, timeout: float = 900, module: str = "harness") -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT), HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def summaries(root: Path) -> dict[str, dict]:
    """run folder (relative to ``root``) -> parsed summary.json, for every run folder under ``root``."""
    return {str(p.parent.relative_to(root)): json.loads(p.read_text()) for p in sorted(Path(root).rglob("summary.json"))}


def sweep_dir(out_dir: Path) -> Path:
    (d,) = [p for p in (Path(out_dir) / "sweeps").iterdir() if p.is_dir()]
    return d
