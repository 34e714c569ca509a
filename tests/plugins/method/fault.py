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

``alloc_mib: M`` (any mode) holds a buffer of M MiB, written, during ``ingest`` and frees it before
returning: a known working allocation the memory card must show in the ingest phase.
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
    alloc_mib: int = 0  # a temporary buffer held during ingest (memory card tests)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.mode in MODES, "method.mode", " | ".join(MODES), self.mode)
        check(isinstance(self.min_tokens, int) and self.min_tokens >= 0, "method.min_tokens", "an integer >= 0", self.min_tokens)
        check(isinstance(self.alloc_mib, int) and self.alloc_mib >= 0, "method.alloc_mib", "an integer >= 0", self.alloc_mib)


class Fault(FullKV):
    name = "fault"
    Config = FaultConfig
    variant = "test-only"
    test_only = True

    def ingest(self, context: Context) -> None:
        if self.cfg.mode != "none" and context.num_tokens >= self.cfg.min_tokens:
            self._fire(self.cfg.mode, context.num_tokens)
        scratch = torch.ones(self.cfg.alloc_mib * 2**18, dtype=torch.float32, device=self.lm.device)  # [M MiB / 4 B], every page written
        super().ingest(context)
        del scratch

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
