"""Build Triton kernels lazily, once per execution mode (compiled or interpreted).

Why kernel sources are plain functions wrapped on first use instead of `@triton.jit` at import:
the AOT compile check needs real `JITFunction`s while interpreter runs need
`InterpretedFunction`s, and a module decorated at import would fix one mode for whoever imports
it first. `kernel(fn)` wraps on first launch in the mode TRITON_INTERPRET selects then (cached
per function and mode); `kernel(fn, interpret=False)` forces a compilable wrapper.

One constraint is Triton's own and cannot be lifted here: its library functions (`tl.sum`, …)
are decorated when `triton` is first imported, so TRITON_INTERPRET=1 must be set before that
import (transformers may import triton too). `check_mode` turns a late setting into a clear error
instead of Triton's "Cannot call @triton.jit'd outside of the scope of a kernel"; tests that
need the interpreter run in a child process that sets the variable before starting Python.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import torch

# Tests set this to True so every buffer a kernel should write starts as NaN: an element the
# kernel forgets to write then fails the comparison instead of passing with stale memory.
POISON_OUTPUTS = False


def interpreting() -> bool:
    """True when TRITON_INTERPRET=1 is set now (read on every call, not at import)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def triton_import_mode() -> str:
    """'interpret' or 'compile': how Triton's library functions were wrapped at its import."""
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    return "interpret" if isinstance(tl.standard.sum, InterpretedFunction) else "compile"


def check_mode(interpret: bool) -> None:
    """Raise if the wanted mode differs from the mode Triton was imported in."""
    have = triton_import_mode()
    want = "interpret" if interpret else "compile"
    if have != want:
        raise RuntimeError(
            f"Triton was imported in {have} mode but {want} mode is wanted: set "
            "TRITON_INTERPRET=1 (interpret) or unset it (compile) before anything imports "
            "triton, e.g. in the environment of the process")


@functools.lru_cache(maxsize=None)
def _wrap(fn: Callable, interpret: bool) -> Any:
    if interpret:
        from triton.runtime.interpreter import InterpretedFunction

        return InterpretedFunction(fn)
    from triton.runtime.jit import JITFunction

    return JITFunction(fn)


def kernel(fn: Callable, interpret: bool | None = None) -> Any:
    """The launchable Triton kernel for a plain kernel-source function.

    interpret=None follows TRITON_INTERPRET; True/False forces a mode (the AOT compile check
    needs a JITFunction whatever the environment says).
    """
    mode = interpreting() if interpret is None else bool(interpret)
    check_mode(mode)
    return _wrap(fn, mode)


# Launches and the AOT compile pass enable_fp_fusion=True explicitly: FMA contraction (one
# rounding per multiply-add) is what we test against, and Triton 3.9 warns that its default
# will flip in 3.10.


def launch_config(r: int) -> tuple[int, int]:
    """(BLOCK_R, num_warps) for an r×r fp32 state held in registers by one program."""
    block = max(2, 1 << max(0, (r - 1).bit_length()))
    # ≤ 16 state elements per thread for r ≥ 16: keeps the backward (S, G and temporaries)
    # under 255 registers without spills at r = 64 (checked with ptxas -v for sm_90).
    warps = max(1, block * block // 512)
    return block, warps


def empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Output buffer for a kernel: uninitialised, or NaN-filled when POISON_OUTPUTS is set."""
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)
