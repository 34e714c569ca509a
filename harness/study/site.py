"""Rendering the study: sections -> one HTML page and its Markdown twin, the report package's
templates loader, escaping and stylesheet, plus the tidy table and every figure's CSV.

Inputs are read-only: the mechanism CSVs (``mechanism_*.csv``, ``mechanism_meta.json``) may live in
the output folder itself and are never removed; re-rendering replaces ``figures/`` and ``static/``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from harness import env, io
from harness.reporting import tidy
from harness.reporting.fmt import tidy_markdown
from harness.reporting.runs import ReportError, load_runs
from harness.reporting.site import environments
from harness.study import agent_precision, parts
from harness.study.sections import COMMANDS, Section, assign_parts

TITLE = "Fixed-size state or retrieval? The memharness study"
INTRO = ("Each part below answers one question with this harness's own measurements: the capacity of the state update itself, "
         "recall on a language model, cost as the context grows, an agent's changing facts, and precision. Every number is "
         "computed from the runs and shown with its n and 95% interval; a part whose runs are missing says so with its command.")
OWNED = ("figures", "static")
TIDY_CSV = "tidy_samples.csv"


@dataclass
class Study:
    out: Path
    sections: list[Section] = field(default_factory=list)
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    pages: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def _models(df: pd.DataFrame) -> dict[str, dict]:
    """Each model's config block (``model.*`` columns of its first row)."""
    out = {}
    cols = [c for c in df.columns if c.startswith("model.")]
    for model, g in df.groupby("model"):
        out[model] = {c[6:]: g[c].iloc[0] for c in cols if pd.notna(g[c].iloc[0])}
    return out


def _frame(run_paths: Sequence[Path | str], out: Path, assign: Mapping[Path | str, str] | None = None) -> pd.DataFrame:
    """The tidy frame of every run under ``run_paths`` and ``assign``'s folders; a run whose config
    has no ``study.part`` takes the part its folder is assigned to, else its task's (TASK_PART)."""
    runs = []
    folders = [*run_paths, *(assign or {})]
    if folders:
        try:
            runs = load_runs(folders, exclude=out)
        except ReportError as e:
            print(f"note: {e}; the language-model parts render as not run yet")
    df = tidy.frame(runs)
    paths = df["run_path"].map(lambda p: Path(p).resolve()) if len(df) else None
    for folder, part in (assign or {}).items() if paths is not None else ():
        root = Path(folder).resolve()
        under = paths.map(lambda p: p == root or root in p.parents)
        df.loc[under & df["part"].isna(), "part"] = part
    return assign_parts(df)


def build_study(run_paths: Sequence[Path | str], out: Path | str, mechanism_dir: Path | str | None = None,
                assign: Mapping[Path | str, str] | None = None, command: str | None = None) -> Study:
    """Render the site into ``out``; ``command`` is the render command as run (default: the generic one)."""
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in OWNED:
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "static").mkdir()
    (out / "static" / "style.css").write_text(files("reports").joinpath("static", "style.css").read_text(encoding="utf-8"), encoding="utf-8")
    df = _frame(run_paths, out, assign)
    study = Study(out, frame=df)
    study.sections = [parts.mechanism(out, Path(mechanism_dir) if mechanism_dir else out),
                      parts.capacity(out, df), parts.cost(out, df, _models(df) if len(df) else {}),
                      agent_precision.agent(out, df), agent_precision.precision(out, df)]
    e = env.collect()
    rendered = {"date": dt.date.today().isoformat(), "commit": str(e.get("git_sha") or "n/a")[:10] + (" (with local changes)" if e.get("git_dirty") else ""),
                "device": f"{e.get('cpu')}, {e.get('cpu_threads')} CPU threads" + (f", {e['gpus'][0]['name']}" if e.get("gpus") else ""),
                "command": command or COMMANDS["render"]}
    study.sections.append(agent_precision.limitations(study.sections, df, rendered))
    io.write_text(out / TIDY_CSV, df.drop(columns=["run_path"], errors="ignore").to_csv(index=False))
    envs = environments()
    ctx = {"title": TITLE, "intro": INTRO, "sections": study.sections, "rendered": rendered, "tidy_csv": TIDY_CSV}
    for ext, e_ in envs.items():
        text = e_.get_template(f"study.{ext}.j2").render(**ctx)
        text = tidy_markdown(text) if ext == "md" else text
        io.write_text(out / f"index.{ext}", text)
        study.pages.append(out / f"index.{ext}")
    study.seconds = time.perf_counter() - t0
    return study
