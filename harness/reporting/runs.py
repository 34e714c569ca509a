"""Finding and reading run folders for the report.

A run folder is any folder holding ``summary.json``: the harness writes it last, so its presence
means the run finished (ok, failed or oom). The renderer never touches the disk layout: runs are
read here, turned into the tidy frame (``tidy``) and every number across runs is cut from that frame
(``cuts``). A broken or partial folder is kept and shown as such, never skipped silently.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

RAW_FILES = ("summary.json", "samples.jsonl", "env.json", "config.yaml")
MARKER = ".memharness-report"  # marks a rendered report; its copies of run files are not runs


class ReportError(Exception):
    """Bad input to the report (no runs, missing folder); the CLI prints it and exits non-zero."""


@dataclass
class Run:
    path: Path
    summary: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    config_text: str | None = None
    problems: list[str] = field(default_factory=list)
    id: str = ""
    #: where the run came from, relative to the folder given to the report (e.g. "runs/sweeps/x/0");
    #: pages show this, never the absolute path, so a published site reveals no local layout
    source: str = ""

    @property
    def method(self) -> str:
        return str(self.summary.get("method") or "unknown")

    @property
    def task(self) -> str:
        return str(self.summary.get("task") or "unknown")

    @property
    def model(self) -> str:
        return str(self.summary.get("model") or "unknown")

    @property
    def status(self) -> str:
        return str(self.summary.get("status") or "unknown")

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def discover(paths: Sequence[Path | str], exclude: Path | None = None) -> list[Path]:
    """Every run folder under ``paths`` (recursively), sorted; raises ReportError when none."""
    found: set[Path] = set()
    skip = exclude.resolve() if exclude is not None else None
    for p in map(Path, paths):
        if not p.exists():
            raise ReportError(f"no such file or folder: {p}")
        hits = [p] if p.is_file() and p.name == "summary.json" else sorted(p.rglob("summary.json")) if p.is_dir() else []
        for hit in hits:
            folder = hit.parent.resolve()
            if skip is not None and (folder == skip or skip in folder.parents):
                continue
            if any((d / MARKER).exists() for d in folder.parents):
                continue
            found.add(folder)
    if not found:
        where = ", ".join(str(p) for p in paths) or "(no folders given)"
        raise ReportError(f"no run folders found under {where}: a run folder holds summary.json (written by `python -m harness ...`)")
    return sorted(found)


def _read_jsonl(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                problems.append(f"{path.name} line {i} is not valid JSON ({e.msg}); the line is left out")
    return rows


def load_run(folder: Path) -> Run:
    """Read one run folder; unreadable or missing files become ``problems`` shown on its page."""
    folder = Path(folder)
    problems: list[str] = []
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        if not isinstance(summary, dict):
            raise ValueError("summary.json is not a JSON object")
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)  # an OSError's str() holds the absolute path
        summary = {"status": "unreadable", "error": {"type": type(e).__name__, "message": f"summary.json could not be read: {why}", "traceback": ""}}
    run = Run(path=folder, summary=summary, problems=problems)
    if (folder / "samples.jsonl").is_file():
        run.samples = _read_jsonl(folder / "samples.jsonl", problems)
    else:
        problems.append("samples.jsonl is missing: per-sample values and the plots that need them are not available")
    try:
        run.env = json.loads((folder / "env.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        problems.append(f"env.json could not be read ({type(e).__name__}): the environment is unknown")
    if (folder / "config.yaml").is_file():
        run.config_text = (folder / "config.yaml").read_text(encoding="utf-8")
    else:
        problems.append("config.yaml is missing")
    return run


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def _settings(r: Run) -> dict[str, str]:
    """The run's method and task settings plus seed, flattened to strings (for telling runs apart)."""
    def text(v: Any) -> str:
        return "+".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    out = {k: text(v) for part in ("method_config", "task_config") for k, v in (r.summary.get(part) or {}).items()}
    out["seed"] = str(r.summary.get("seed"))
    return out


def relative_source(folder: Path, roots: Sequence[Path | str]) -> str:
    """``folder`` as "<name of the given folder>/<path below it>"; the run folder's own name when it
    is not below any of ``roots`` (it always is when found by ``discover``)."""
    folder = Path(folder).resolve()
    for root in map(Path, roots):
        base = root.resolve()
        if base.is_file():
            base = base.parent
        if folder == base:
            return folder.name or "."
        if base in folder.parents:
            return (Path(base.name) / folder.relative_to(base)).as_posix() if base.name else folder.relative_to(base).as_posix()
    return folder.name


def load_runs(paths: Sequence[Path | str], exclude: Path | None = None) -> list[Run]:
    """Discover and read every run, ordered by (task, method, model, folder), with unique ids.

    Runs that share method, task and model are named by the settings that differ between them
    (e.g. ``full_kv__kv_recall__gemma3_270m__num_facts-16``), falling back to a counter."""
    runs = [load_run(p) for p in discover(paths, exclude)]
    for r in runs:
        r.source = relative_source(r.path, paths)
    runs.sort(key=lambda r: (r.task, r.method, r.model, str(r.path)))
    groups: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        groups[slug(f"{r.method}__{r.task}__{r.model}")].append(r)
    taken: set[str] = set()
    for base, members in groups.items():
        settings = [_settings(r) for r in members]
        keys = sorted({k for st in settings for k in st if len({st2.get(k) for st2 in settings}) > 1})
        for r, st in zip(members, settings):
            rid = base if len(members) == 1 or not keys else slug(base + "__" + "_".join(f"{k}-{st.get(k)}" for k in keys))[:120]
            n, unique = 1, rid
            while unique in taken:
                n += 1
                unique = f"{rid}-{n}"
            taken.add(unique)
            r.id = unique
    return runs

