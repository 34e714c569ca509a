"""Build Triton kernels lazily, once per execution mode (compiled or interpreted).

Why not decorate with `@triton.jit` at import time: `triton.jit` reads TRITON_INTERPRET when it
decorates, so the first import would fix the mode for the whole process. Tests that run the
kernels under the interpreter and tests that compile them ahead of time for sm_90 can then not
share one pytest process, and whichever file imported the module first would win. Here kernel
sources are plain functions; `kernel(fn)` wraps them on first use in the mode that
TRITON_INTERPRET selects *at call time* and caches the wrapper per (function, mode).
"""

from __future__ import annotations

import functools
from typing import Any, Callable


def interpreting() -> bool:
    """True when TRITON_INTERPRET=1 is set now (read on every call, not at import)."""
    from triton import knobs

    return bool(knobs.runtime.interpret)


@functools.lru_cache(maxsize=None)
def _wrap(fn: Callable, interpret: bool) -> Any:
    if interpret:
        from triton.runtime.interpreter import InterpretedFunction

        return InterpretedFunction(fn)
    from triton.runtime.jit import JITFunction

    return JITFunction(fn)


def kernel(fn: Callable, interpret: bool | None = None) -> Any:
    """The launchable Triton kernel for a plain kernel-source function.

    interpret=None follows TRITON_INTERPRET; True/False forces a mode (the AOT compile test
    needs a real JITFunction even when the interpreter is switched on for other tests).
    """
    return _wrap(fn, interpreting() if interpret is None else bool(interpret))


def launch_config(r: int) -> tuple[int, int]:
    """(BLOCK_R, num_warps) for an r×r fp32 state held in registers by one program."""
    block = 1 << max(0, (r - 1).bit_length())
    block = max(block, 2)
    warps = 1 if block <= 16 else (2 if block <= 32 else 4)
    return block, warps
