"""Sweeps: config resolvers for deterministic run folders, a Hydra callback that checks every run's
config before the first one starts and writes one summary table at the end, and progress with an ETA.

Layout (see docs/sweeps.md)::

    <out_dir>/<method>_<task>_<model>_<hash>/                 a single run
    <out_dir>/sweeps/<experiment|sweep>_<id>/                 a multirun; <id> hashes the command line
        <method>_<task>_<model>_<hash>/                       one folder per run (job.json says what happened)
        sweep_summary.csv, sweep_summary.md                   every run of the last invocation

The callback talks to the runs through environment variables because runs may execute in other
processes (submitit) that inherit the environment but not this module's state.
"""

from __future__ import annotations

import csv
import hashlib
import io as _io
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from harness import io
from harness.registry import ConfigError
from harness.resume import config_hash

ENV_INVOCATION, ENV_TOTAL, ENV_T0, ENV_DIR = "MEMH_SWEEP_INVOCATION", "MEMH_SWEEP_TOTAL", "MEMH_SWEEP_T0", "MEMH_SWEEP_DIR"
#: command-line keys that do not change what a sweep measures (left out of the sweep id)
VOLATILE_OVERRIDES = ("force", "dry_run", "launcher", "out_dir", "run.progress", "run.timeout_s")
#: on CPU, ``cpu_cap`` divides GPU-sized prompt lengths by this (4k/16k/32k -> 256/1k/2k tokens)
CPU_DIVISOR = 16
STATUS_CODE = {"ok": 0, "skipped": 0, "failed": 1, "oom": 1, "timeout": 1, "config_error": 2}

_exit_codes: list[int] = []
_notes: set[str] = set()


def record_exit(status: str) -> None:
    _exit_codes.append(STATUS_CODE.get(status, 1))


def exit_code() -> int:
    """0 when every run ended ok or skipped; 1 when any failed/oom/timed out; 2 on a config error."""
    return max(_exit_codes, default=0)


def note(msg: str) -> None:
    if msg not in _notes:
        _notes.add(msg)
        print(f"note: {msg}", file=sys.stderr, flush=True)


# -- resolvers ---------------------------------------------------------------------------------


def _sweep_id(task_overrides: Any, experiment: Any = None) -> str:
    kept = sorted(str(o) for o in task_overrides if str(o).lstrip("+~").split("=", 1)[0] not in VOLATILE_OVERRIDES)
    name = next((o.split("=", 1)[1] for o in kept if o.lstrip("+").startswith("experiment=")), None)
    return f"{name or experiment or 'sweep'}_{hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:8]}"


def _cpu_cap(tokens: int, what: str = "prompt length", *, _root_: DictConfig) -> int:
    """GPU-sized token counts (prompt lengths, KV windows), scaled down (with a visible note) when the
    run will be on CPU."""
    device = str(OmegaConf.select(_root_, "model.device", default="auto"))
    if device.startswith("cuda"):
        return int(tokens)
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            return int(tokens)
    capped = max(64, int(tokens) // CPU_DIVISOR)
    note(f"no CUDA device: {what} {tokens} capped to {capped} tokens (1/{CPU_DIVISOR}); this preset's numbers need a GPU")
    return capped


#: short names of the precision settings in run folder names
_DTYPE_TAGS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _setting_tag(*, _root_: DictConfig) -> str:
    """The precision settings of a run as a folder-name part: "" at full precision (model.dtype auto or
    float32, no quantization), else e.g.
    "_bf16_wint8" (backbone dtype, weight quantization) or "_kvint4" (quantized KV cache), so runs
    that differ only in precision are told apart by name (the hash that follows tells them apart too)."""
    dtype = str(OmegaConf.select(_root_, "model.dtype", default="auto"))
    parts = [] if dtype in ("auto", "float32") else [_DTYPE_TAGS.get(dtype, dtype)]
    quant = str(OmegaConf.select(_root_, "model.quantization", default="none"))
    kv = str(OmegaConf.select(_root_, "method.kv_quantization", default="none"))
    parts += [f"w{quant}"] if quant != "none" else []
    parts += [f"kv{kv}"] if kv != "none" else []
    return "".join(f"_{p}" for p in parts)


def register_resolvers() -> None:
    for name, fn, cache in (("cfg_hash", lambda *, _root_: config_hash(_root_), False), ("sweep_id", _sweep_id, True),
                            ("cpu_cap", _cpu_cap, False), ("setting_tag", _setting_tag, False)):
        if not OmegaConf.has_resolver(name):
            # sweep_id is cached: Hydra copies the sweep's resolver cache into each job's config, so every
            # job (composed from its own overrides) gets the folder computed from the sweep's command line
            OmegaConf.register_new_resolver(name, fn, use_cache=cache)


register_resolvers()


# -- progress ----------------------------------------------------------------------------------


def progress_line(sweep_dir: Path, label: str, status: str, wall_s: float) -> str | None:
    """``[3/6] ok <run> (4.2 s) · eta 0:01:20`` for the run just finished; None outside a sweep."""
    inv = os.environ.get(ENV_INVOCATION)
    if not inv:
        return None
    jobs = collect(sweep_dir, inv, with_summary=False)
    done, total = len(jobs), int(os.environ.get(ENV_TOTAL, "0")) or None
    elapsed = time.time() - float(os.environ.get(ENV_T0, time.time()))
    ran = [j.get("wall_s") or 0.0 for j in jobs if j.get("status") != "skipped"]  # skips cost ~nothing
    if total and done >= total:
        eta = _hms(0)
    else:
        eta = "?" if not total or not ran else _hms(sum(ran) / len(ran) * (total - done))
    return f"[{done}/{total or '?'}] {status} {label} ({wall_s:.1f} s) · elapsed {_hms(elapsed)} · eta {eta}"


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


# -- the sweep table ---------------------------------------------------------------------------

COLUMNS = ["num", "status", "method", "task", "model", "overrides", "accuracy", "n", "ttft_p50_ms", "decode_tok_s",
           "state_mib_max", "host_peak_rss_mib", "gpu_peak_mib", "wall_s", "error", "run_dir"]


def collect(sweep_dir: Path, invocation: str | None, with_summary: bool = True) -> list[dict]:
    """One row per run folder of ``sweep_dir`` whose job.json belongs to ``invocation``."""
    rows = []
    for job_file in sorted(Path(sweep_dir).glob("*/job.json")):
        try:
            job = io.read_json(job_file)
        except (OSError, ValueError):
            continue
        if invocation and job.get("invocation") != invocation:
            continue
        rows.append(_row(job) if with_summary else job)
    return sorted(rows, key=lambda r: (r.get("num") is None, r.get("num") or 0))


def _row(job: dict) -> dict:
    row = {k: job.get(k) for k in ("num", "status", "method", "task", "model", "wall_s", "run_dir")}
    row["overrides"] = " ".join(o for o in job.get("overrides") or [] if o.lstrip("+~").split("=", 1)[0] not in VOLATILE_OVERRIDES)
    err = job.get("error") or {}
    row["error"] = f"{err.get('type')}: {err.get('message')}".splitlines()[0][:160] if err else ""
    try:
        s = io.read_json(Path(job["run_dir"]) / "summary.json")
    except (OSError, ValueError, KeyError, TypeError):
        return row
    m = s.get("metrics", {})

    def g(name: str, stat: str, scale: float = 1.0) -> float | None:
        v = (m.get(name) or {}).get(stat)
        return None if v is None else round(v * scale, 4)

    row.update(accuracy=(s.get("accuracy") or {}).get("mean"), n=(s.get("accuracy") or {}).get("n"),
               ttft_p50_ms=g("ttft_query_s", "p50", 1e3), decode_tok_s=g("decode_tok_per_s", "mean"),
               state_mib_max=g("state_bytes", "max", 2**-20), host_peak_rss_mib=g("host_peak_rss_bytes", "max", 2**-20),
               gpu_peak_mib=g("gpu_peak_allocated_bytes", "max", 2**-20))
    return row


def render_csv(rows: list[dict]) -> str:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def render_md(rows: list[dict]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            v = f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    head = f"# sweep: {len(rows)} runs (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")"
    lines = [head, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_tables(sweep_dir: Path, rows: list[dict]) -> None:
    io.write_text(Path(sweep_dir) / "sweep_summary.csv", render_csv(rows))
    io.write_text(Path(sweep_dir) / "sweep_summary.md", render_md(rows))


# -- the callback ------------------------------------------------------------------------------


def expand_jobs(config: DictConfig) -> list[list[str]] | None:
    """The override list of every job, as the basic sweeper will expand them (None for other sweepers)."""
    if not str(OmegaConf.select(config, "hydra.sweeper._target_", default="")).endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    args = [f"{k}={v}" for k, v in params.items()] + [str(o) for o in config.hydra.overrides.task]
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)[0]


class SweepCallback(Callback):
    """Validates every run before the first starts, sets up progress, writes the sweep table at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = expand_jobs(config)
        if jobs is not None:
            _prevalidate(config, jobs, dry_run=bool(config.get("dry_run", False)))
        sweep_dir = Path(str(config.hydra.sweep.dir))
        os.environ.update({ENV_INVOCATION: uuid.uuid4().hex[:12], ENV_TOTAL: str(len(jobs) if jobs else 0),
                           ENV_T0: str(time.time()), ENV_DIR: str(sweep_dir)})
        print(f"sweep: {len(jobs) if jobs else '?'} runs -> {sweep_dir}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        inv = os.environ.pop(ENV_INVOCATION, None)
        for key in (ENV_TOTAL, ENV_T0, ENV_DIR):
            os.environ.pop(key, None)
        rows = collect(sweep_dir, inv) or collect(sweep_dir, None)  # runs elsewhere may lack our env
        write_tables(sweep_dir, rows)
        print(render_md(rows), end="", flush=True)
        print(f"sweep summary: {sweep_dir / 'sweep_summary.md'} (and .csv)", flush=True)
        for r in rows:
            record_exit(r["status"])


def _prevalidate(config: DictConfig, jobs: list[list[str]], dry_run: bool = False) -> None:
    """Fail fast: config errors in any run stop the sweep before the first run starts, all of them
    reported in one error (every bad combination of a grid at once, not the first one found).

    With ``dry_run=true``, list the runs (and which already have a complete result) and stop.
    """
    from hydra.core.global_hydra import GlobalHydra

    from harness.checks import validate
    from harness.resume import find_complete

    loader = GlobalHydra.instance().config_loader()
    bad: list[str] = []
    cfgs = []
    for i, overrides in enumerate(jobs):
        cfgs.append(job_cfg := loader.load_sweep_config(config, list(overrides)))
        try:
            validate(job_cfg)
        except ConfigError as e:
            bad.append(f"sweep run #{i} ({' '.join(overrides)}): " + str(e).replace("\n", "\n  "))
    if len(bad) == 1:
        print(f"error: {bad[0]}", file=sys.stderr, flush=True)
    elif bad:
        print(f"error: {len(bad)} of {len(jobs)} sweep runs are invalid; no run was started:\n" + "\n".join(f"  {b}" for b in bad),
              file=sys.stderr, flush=True)
    if bad:
        sys.exit(2)
    if dry_run:
        for i, (overrides, job_cfg) in enumerate(zip(jobs, cfgs)):
            h = config_hash(job_cfg)
            own = Path(str(job_cfg.hydra.sweep.dir)) / str(job_cfg.hydra.sweep.subdir)
            found, _ = find_complete(Path(str(job_cfg.out_dir)), h, own)
            print(f"#{i} {h} {'done: ' + str(found) if found else 'to run'}: {' '.join(overrides)}", flush=True)
        print(f"dry run: {len(jobs)} runs valid; nothing was run", flush=True)
        sys.exit(0)
