"""The Hydra task function: validate, skip what is already done, run in a fresh child process.

Why a child process per run (``launcher=process``, the default): memory peaks then belong to that
run alone, and a segfault, a CUDA out-of-memory or a hang ends that run, not the sweep. The child
(``python -m harness.child <run_dir>``) reads the resolved ``config.yaml`` written here and calls
``harness.run.execute``, which records Python exceptions itself (status failed/oom + traceback).
When the child cannot write a result (killed at ``run.timeout_s``, a crash in native code, the
kernel's OOM killer), this process writes summary.json with the status, the exit signal and the
tail of the child's output. ``launcher=inline`` runs in this process, for debugging (no timeout).

Every run folder of a sweep gets a ``job.json``: what this invocation did with the run (ran, skipped,
failed, ...), which the sweep table is built from.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness import io, sweep
from harness.checks import validate  # noqa: F401  (also imported from here)
from harness.registry import ConfigError
from harness.resume import config_hash, find_complete

RESULT_FILES = ("summary.json", "summary.md", "samples.jsonl", "config.yaml", "env.json")
TAIL_BYTES = 16_000


def job(cfg: DictConfig) -> str:
    """One run of a (multi)run; returns its status. Never raises for a failed run."""
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    rec: dict[str, Any] = {"num": hc.job.num if multirun else None, "overrides": list(hc.overrides.task),
                           "method": cfg.method.get("name"), "task": cfg.task.get("name"), "model": cfg.model.get("name"),
                           "run_dir": str(out), "invocation": os.environ.get(sweep.ENV_INVOCATION)}
    t0 = time.time()
    try:
        opts = validate(cfg)
    except ConfigError as e:  # nothing written yet: an older result in this folder is left alone
        return _config_error(out, rec, e, multirun, clear=False)
    rec["config_hash"] = h = config_hash(cfg)
    if cfg.get("dry_run", False):
        found, _ = find_complete(Path(str(cfg.out_dir)), h, out)
        print(f"dry run: {h} {'done: ' + str(found) if found else 'to run: ' + str(out)}", flush=True)
        if not multirun:
            _remove_if_empty(out)
        return "skipped"
    if not opts["force"]:
        found, reason = find_complete(Path(str(cfg.out_dir)), h, out)
        if found is not None:
            print(f"skipped: {out.name}: complete result in {found} (force=true to re-run)", flush=True)
            return _finish(out, rec | {"status": "skipped", "run_dir": str(found)}, t0, multirun)
        if reason != "no summary.json":
            print(f"redoing {out.name}: {reason}", flush=True)
    _clear(out)
    if opts["launcher"] == "inline":
        if opts["timeout_s"]:
            sweep.note("run.timeout_s is not enforced with launcher=inline")
        from harness.run import execute

        try:
            summary, info = execute(cfg, out), {}
        except ConfigError as e:
            return _config_error(out, rec, e, multirun)
    else:
        summary, info = run_child(cfg, out, opts["timeout_s"])
        if summary is None:
            return _config_error(out, rec, ConfigError(info["config_error"]), multirun, shown=True)
    from harness.summary import console_table

    print(console_table(summary))
    print(f"results: {out}", flush=True)
    if summary["status"] != "ok":
        err = summary.get("error") or {}
        print(f"run {summary['status']}: {err.get('type')}: {err.get('message')}", file=sys.stderr, flush=True)
    return _finish(out, rec | info | {"status": summary["status"], "error": summary.get("error")}, t0, multirun)


def _finish(out: Path, rec: dict, t0: float, multirun: bool) -> str:
    rec["wall_s"] = time.time() - t0
    sweep.record_exit(rec["status"])
    if multirun:
        err = rec.get("error")
        if err:  # the full traceback stays in summary.json
            rec["error"] = {"type": err.get("type"), "message": err.get("message")}
        io.write_json(out / "job.json", rec)
        line = sweep.progress_line(Path(os.environ.get(sweep.ENV_DIR, out.parent)), out.name, rec["status"], rec["wall_s"])
        if line:
            print(line, flush=True)
    return rec["status"]


def _config_error(out: Path, rec: dict, e: ConfigError, multirun: bool, shown: bool = False, clear: bool = True) -> str:
    """Bad input leaves no result behind: the message names the field; exit code 2."""
    if not shown:  # the child has already printed it
        print(f"error: {e}", file=sys.stderr, flush=True)
    if clear:
        _clear(out)
    if not multirun:
        _remove_if_empty(out)
    return _finish(out, rec | {"status": "config_error", "error": {"type": "ConfigError", "message": str(e)}}, time.time(), multirun)


def _remove_if_empty(out: Path) -> None:
    """Remove a run folder that holds only what Hydra put there (.hydra/, its log)."""
    if all(p.suffix == ".log" or ".hydra" in p.parts for p in out.rglob("*") if p.is_file()):
        shutil.rmtree(out, ignore_errors=True)


def _clear(out: Path) -> None:
    for name in RESULT_FILES:
        (out / name).unlink(missing_ok=True)


# -- the child process ------------------------------------------------------------------------


def run_child(cfg: DictConfig, out: Path, timeout_s: float | None) -> tuple[dict | None, dict]:
    """Run ``cfg`` in ``python -m harness.child``; return (summary, info) or (None, {config_error})."""
    io.write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    tail: collections.deque[bytes] = collections.deque()
    proc = subprocess.Popen([sys.executable, "-m", "harness.child", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    tee = threading.Thread(target=_tee, args=(proc.stdout, out / "child.log", tail), daemon=True)
    tee.start()
    timed_out, t0 = False, time.monotonic()
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if timeout_s and time.monotonic() - t0 > timeout_s:
                timed_out = True
                _signal_group(proc.pid, signal.SIGUSR1)  # the child's faulthandler dumps its stacks
                time.sleep(1.0)
                _signal_group(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    except BaseException:  # interrupted (Ctrl-C): never leave the child behind
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    tee.join(timeout=5)
    text = b"".join(tail).decode("utf-8", "replace")
    info = {"exit_code": rc, "child_peak_rss_bytes": usage.ru_maxrss * 1024, "child_wall_s": time.monotonic() - t0}
    if rc == 2 and not (out / "summary.json").exists():
        msgs = [ln[len("error: "):] for ln in text.splitlines() if ln.startswith("error: ")]
        return None, {"config_error": msgs[-1] if msgs else f"child exited with code 2:\n{text[-2000:]}"}
    try:
        return io.read_json(out / "summary.json"), info
    except (OSError, ValueError):
        pass
    if timed_out:
        status_, err = "timeout", ("Timeout", f"run exceeded run.timeout_s={timeout_s} s; the child process was killed")
    elif rc == -signal.SIGKILL:
        status_, err = "oom", ("Killed", "child killed by SIGKILL, not sent by the harness: most likely the kernel's out-of-memory killer")
    elif rc < 0:
        status_, err = "failed", ("ChildCrashed", f"child died from signal {signal.Signals(-rc).name}")
    else:
        status_, err = "failed", ("ChildCrashed", f"child exited with code {rc} without writing a result")
    summary = write_failure(cfg, out, status_, {"type": err[0], "message": err[1], "traceback": text[-TAIL_BYTES:]}, info["child_wall_s"])
    return summary, info


def _tee(pipe: Any, log_path: Path, tail: collections.deque) -> None:
    """Copy the child's output to our stderr and child.log; keep the last TAIL_BYTES for the summary."""
    size = 0
    with open(log_path, "wb") as log:
        for chunk in iter(lambda: pipe.read1(65536), b""):
            log.write(chunk)
            log.flush()
            try:
                if hasattr(sys.stderr, "buffer"):
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.buffer.flush()
                else:
                    sys.stderr.write(chunk.decode("utf-8", "replace"))
            except (OSError, ValueError):
                pass
            tail.append(chunk)
            size += len(chunk)
            while size > TAIL_BYTES and len(tail) > 1:
                size -= len(tail.popleft())


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own session: this reaches only what it started
    except ProcessLookupError:
        pass


def write_failure(cfg: DictConfig, out: Path, status: str, error: dict, wall_s: float) -> dict:
    """The summary of a run whose child could not write one (same shape as ``execute``'s)."""
    from harness.summary import summarize, write_summary
    from tasks import REGISTRY as TASKS

    def plain(node: Any) -> dict:
        d = OmegaConf.to_container(node, resolve=True) if node is not None else {}
        d.pop("name", None)
        return d

    summary = summarize([], TASKS.get(cfg.task.name).metric)
    summary.update({
        "status": status, "error": error, "method": cfg.method.name, "task": cfg.task.name, "model": cfg.model.name,
        "method_config": plain(cfg.method), "task_config": plain(cfg.task), "run": plain(cfg.get("run")), "load": {},
        "wall_s": wall_s, "seed": int(cfg.get("seed", 0)),
    })
    io.write_jsonl(out / "samples.jsonl", [])
    write_summary(out, summary)
    return summary
