"""Check the memory card against the process from outside: run a harness command, poll the RSS of
every descendant process every millisecond (``/proc/<pid>/status``), and compare the largest with
the ``memory.required_bytes`` each run wrote.

Why from outside: the card reads the kernel's high-water mark from inside the run process and resets
it per phase, so the kernel's own lifetime peak of that process is no independent reference.

    python benchmarks/peak_rss.py --out runs/card -- method=full_kv task=passkey run.limit=2 run.warmup=0

Prints one Markdown row per run: method, required (MiB), outside peak (MiB), their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil


def _poll(root: int, peaks: dict[int, int], done: threading.Event) -> None:
    while not done.is_set():
        try:
            procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in procs:
            try:
                peaks[p.pid] = max(peaks.get(p.pid, 0), p.memory_info().rss)
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.001)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="out_dir for the runs")
    ap.add_argument("overrides", nargs="+", help="harness overrides after --")
    a = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "harness", f"out_dir={a.out}", *a.overrides], env=env)
    peaks: dict[int, int] = {}
    done = threading.Event()
    t = threading.Thread(target=_poll, args=(proc.pid, peaks, done), daemon=True)
    t.start()
    rc = proc.wait()
    done.set()
    t.join()
    child = max((v for k, v in peaks.items() if k != proc.pid), default=None)  # the run process (launcher=process)
    if child is not None:
        from harness import io

        io.write_json(Path(a.out) / "outside_peak_rss.json", {"peak_rss_bytes": child, "poll_s": 0.001, "overrides": a.overrides})
    for path in sorted(Path(a.out).rglob("summary.json")):
        s = json.loads(path.read_text())
        req = (s.get("memory") or {}).get("required_bytes")
        if req is None or child is None:
            continue
        print(f"| {s['method']} | {s['task']} | {req / 2**20:.1f} | {child / 2**20:.1f} | {req / child:.3f} |")
    return rc


if __name__ == "__main__":
    sys.exit(main())
