"""fault: TEST-ONLY. Full KV that fails on purpose, to test that a sweep survives its runs failing.

Not a memory method and never part of a benchmark: a plugin (see harness/registry.py) that only the
test suite registers (tests/conftest.py adds tests/plugins to MEMHARNESS_PLUGINS). With
``mode: none`` (the default) it is exactly full_kv, so the contract tests that cover every
registered method pass for it too. Any other mode
fires during ``ingest`` of a context of at least ``min_tokens`` tokens, which lets one sweep hold
both runs that fail and runs that do not (e.g. a fault only at the longest context length):

- ``raise``     a RuntimeError (the run is recorded as failed, with its traceback)
- ``oom``       a ``torch.cuda.OutOfMemoryError`` (recorded as oom, also on CPU)
- ``hang``      sleep forever (killed at ``run.timeout_s``, recorded as timeout)
- ``segfault``  a SIGSEGV in native code (the child dies; the parent records the crash)
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import torch

from harness.registry import check
from methods.base import Context, MethodConfig
from methods.full_kv import FullKV

MODES = ("none", "raise", "oom", "hang", "segfault")


@dataclass
class FaultConfig(MethodConfig):
    mode: str = "none"
    min_tokens: int = 0  # fire only for contexts at least this long

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.mode in MODES, "method.mode", " | ".join(MODES), self.mode)
        check(isinstance(self.min_tokens, int) and self.min_tokens >= 0, "method.min_tokens", "an integer >= 0", self.min_tokens)


class Fault(FullKV):
    name = "fault"
    Config = FaultConfig
    variant = "test-only"
    test_only = True

    def ingest(self, context: Context) -> None:
        if self.cfg.mode != "none" and context.num_tokens >= self.cfg.min_tokens:
            self._fire(self.cfg.mode, context.num_tokens)
        super().ingest(context)

    @staticmethod
    def _fire(mode: str, n: int) -> None:
        if mode == "raise":
            raise RuntimeError(f"fault: injected failure at a {n}-token context")
        if mode == "oom":
            raise torch.cuda.OutOfMemoryError(f"fault: injected CUDA out of memory at a {n}-token context")
        if mode == "hang":
            while True:
                time.sleep(3600)
        os.kill(os.getpid(), signal.SIGSEGV)
