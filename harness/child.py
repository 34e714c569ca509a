"""``python -m harness.child <run_dir>``: execute the resolved ``<run_dir>/config.yaml`` in this process.

Started by ``harness.launch.run_child``, one process per run. Exit codes: 0 a result was written
(whatever its status), 2 a config error (message on stderr, no result). Anything else means the
process died before it could write a result, and the parent writes one for it.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from pathlib import Path


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so a killed sweep leaves no orphan holding a GPU."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m harness.child <run_dir>", file=sys.stderr)
        return 64
    run_dir = Path(argv[0])
    _die_with_parent()
    faulthandler.enable(all_threads=True)  # a segfault prints the Python stacks into the parent's log
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent asks for stacks before a timeout kill

    from omegaconf import OmegaConf

    from harness.registry import ConfigError
    from harness.run import execute

    cfg = OmegaConf.load(run_dir / "config.yaml")
    try:
        execute(cfg, run_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
