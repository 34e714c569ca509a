"""δ-mem delta-rule state scan: one public entry point with an `impl=` switch.

Why one entry point: methods and benchmarks call `scan`/`step` and never pick kernels
themselves, so the reference (CPU, ground truth) and the Triton kernels (GPU) share one tensor
layout and one validation path, and a test can compare any two implementations directly.

Layout everywhere: q, k, v, beta [B, T, N, r] (N independent state heads of size r), state
[B, N, r, r] fp32 with row i = value dim i. Per head: read_t = S_{t-1} q_t (read BEFORE write),
S_t = Diag(1 − β_t) S_{t-1} + Diag(β_t)(v_t − S_{t-1} k_t) k_tᵀ. q, k arrive normalised,
β in (0, 1).

impl: "auto" (Triton for CUDA tensors with r ≤ 64 and no fp64, chunked reference otherwise),
"reference" (chunked PyTorch; the loop below 4 tokens), "triton" (CUDA, or CPU under
TRITON_INTERPRET=1: the chunk-parallel forward for long inference scans, the token-serial one
otherwise), "triton_serial" / "triton_chunked" (one of the two forms, for benchmarks and tests),
"recurrent" (per-token loop, ground truth for tests only).
"""

from __future__ import annotations

import difflib

import torch

from kernels.deltamem import reference
from kernels.deltamem._jit import interpreting  # public: callers check for the Triton CPU interpreter

__all__ = ["scan", "step", "fused_step", "interpreting", "IMPLS", "STEP_IMPLS", "PROJECTS", "MAX_TRITON_R"]

IMPLS = ("auto", "reference", "triton", "triton_serial", "triton_chunked", "recurrent")
STEP_IMPLS = ("auto", "reference", "triton")
PROJECTS = ("kernel", "matmul")
MAX_TRITON_R = 64
# Below this many tokens the reference uses the per-token loop: one step costs ~50 µs on CPU,
# the chunked form ~200 µs of fixed overhead (measured crossover T ≈ 4–8 for r = 8 and 64).
LOOP_BELOW_T = 4
# impl="triton" takes the chunk-parallel forward from this many tokens on (no gradients,
# r ≤ 16). An estimate from the serial chains (T token steps against ~T/C + 2C steps and two
# more launches), not a GPU measurement: `python -m kernels.bench` times both forms.
CHUNKED_FROM_T = 1024
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_impl(impl: str, allowed: tuple[str, ...]) -> None:
    if impl not in allowed:
        hint = difflib.get_close_matches(str(impl), allowed, n=1)
        near = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"impl must be one of {allowed}, got {impl!r}{near}")


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                  state: torch.Tensor | None, ndim: int, layout: str) -> None:
    for name, x in (("q", q), ("k", k), ("v", v), ("beta", beta)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor {layout}, got {type(x).__name__}")
        if x.dim() != ndim:
            raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {tuple(x.shape)}")
        if x.shape != q.shape:
            raise ValueError(f"{name} must have q's shape {tuple(q.shape)} {layout}, "
                             f"got {tuple(x.shape)}")
        if x.dtype not in _DTYPES:
            raise ValueError(f"{name} dtype must be one of fp16/bf16/fp32/fp64, got {x.dtype}")
        if x.dtype != q.dtype:
            raise ValueError(f"{name} dtype must equal q's dtype {q.dtype}, got {x.dtype}")
        if x.device != q.device:
            raise ValueError(f"{name} must be on q's device {q.device}, got {x.device}")
    B, N, r = q.shape[0], q.shape[-2], q.shape[-1]
    if r < 1:
        raise ValueError(f"state size r (last dim of q) must be >= 1, got {r}")
    if state is None:
        return
    want = torch.float64 if q.dtype == torch.float64 else torch.float32
    if not isinstance(state, torch.Tensor) or tuple(state.shape) != (B, N, r, r):
        got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
        raise ValueError(f"state must have shape [B, N, r, r] = {(B, N, r, r)}, got {got}")
    if state.dtype != want:
        raise ValueError(f"state dtype must be {want} for {q.dtype} inputs, got {state.dtype}")
    if state.device != q.device:
        raise ValueError(f"state must be on q's device {q.device}, got {state.device}")


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will record a call on these tensors (None entries ignored)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _triton_usable(q: torch.Tensor) -> bool:
    if q.dtype == torch.float64 or q.shape[-1] > MAX_TRITON_R:
        return False
    if q.is_cuda:
        return True
    from kernels.deltamem._jit import interpreting

    return interpreting()


def _require_triton(q: torch.Tensor) -> None:
    if q.dtype == torch.float64:
        raise ValueError("impl='triton' supports fp16/bf16/fp32 inputs, got torch.float64; "
                         "use impl='reference'")
    if q.shape[-1] > MAX_TRITON_R:
        raise ValueError(f"impl='triton' needs r <= {MAX_TRITON_R}, got r={q.shape[-1]}")
    if not _triton_usable(q):
        raise ValueError(f"impl='triton' needs CUDA tensors (got device {q.device}) or "
                         "TRITON_INTERPRET=1 in the environment for the CPU interpreter")


def scan(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
         state: torch.Tensor | None = None, impl: str = "auto",
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the δ-mem recurrence over T tokens.

    q, k, v, beta: [B, T, N, r], one dtype; state: [B, N, r, r] fp32 (None = zeros).
    Returns reads [B, T, N, r] in q's dtype and the final state [B, N, r, r] fp32
    (fp64 when the inputs are fp64, reference implementations only).
    """
    _check_impl(impl, IMPLS)
    _check_inputs(q, k, v, beta, state, 4, "[B, T, N, r]")
    if impl == "auto":
        impl = "triton" if q.is_cuda and _triton_usable(q) else "reference"
    if impl == "recurrent" or (impl == "reference" and q.shape[1] < LOOP_BELOW_T):
        return reference.recurrent(q, k, v, beta, state)
    if impl == "reference":
        return reference.chunked(q, k, v, beta, state)
    _require_triton(q)
    from kernels.deltamem import triton_chunked, triton_scan

    needs_grad = _needs_grad(q, k, v, beta, state)
    r = q.shape[-1]
    if impl == "triton":
        impl = ("triton_chunked" if not needs_grad and r <= triton_chunked.MAX_CHUNKED_R
                and q.shape[1] >= CHUNKED_FROM_T else "triton_serial")
    if impl == "triton_serial" or q.shape[1] == 0:
        return triton_scan.scan(q, k, v, beta, state)
    if needs_grad:
        raise ValueError("impl='triton_chunked' has no backward; use impl='triton' (or "
                         "'triton_serial') when gradients are needed")
    if r > triton_chunked.MAX_CHUNKED_R:
        raise ValueError(f"impl='triton_chunked' needs r <= {triton_chunked.MAX_CHUNKED_R} "
                         f"(its per-chunk transfer holds r³ numbers), got r={r}; use impl='triton'")
    q, k, v, beta = (x.contiguous() for x in (q, k, v, beta))
    return triton_chunked.forward(q, k, v, beta, None if state is None else state.contiguous())


def step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
         state: torch.Tensor | None, impl: str = "auto",
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode token: q, k, v, beta [B, N, r]; state [B, N, r, r] fp32 (None = zeros).

    Returns (read [B, N, r] in q's dtype, new state [B, N, r, r] fp32). The Triton kernel has
    no backward, so "auto" uses the reference whenever autograd needs gradients.
    """
    _check_impl(impl, STEP_IMPLS)
    _check_inputs(q, k, v, beta, state, 3, "[B, N, r]")
    if state is None:
        B, N, r = q.shape
        dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        state = torch.zeros(B, N, r, r, dtype=dtype, device=q.device)
    needs_grad = _needs_grad(q, k, v, beta, state)
    if impl == "auto":
        impl = "triton" if q.is_cuda and _triton_usable(q) and not needs_grad else "reference"
    if impl == "reference":
        return reference.step(q, k, v, beta, state)
    _require_triton(q)
    if needs_grad:
        raise ValueError("impl='triton' step has no backward; call it under torch.no_grad() "
                         "or use impl='reference' when gradients are needed")
    from kernels.deltamem import triton_scan

    return triton_scan.step(q, k, v, beta, state)


def _check_fused(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, state: torch.Tensor,
                 write: torch.Tensor | None, valid: torch.Tensor | None, project: str,
                 delta_weight: torch.Tensor | None) -> None:
    if project not in PROJECTS:
        raise ValueError(f"project must be one of {PROJECTS}, got {project!r}")
    for name, t in (("x", x), ("weight", weight), ("bias", bias), ("state", state)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device != state.device:
            raise ValueError(f"{name} must be on state's device {state.device}, got {t.device}")
    if state.dim() != 4 or state.shape[-1] != state.shape[-2]:
        raise ValueError(f"state must be [B, N, r, r], got shape {tuple(state.shape)}")
    B, N, r = state.shape[0], state.shape[1], state.shape[2]
    if x.dim() != 2 or x.shape[0] != B:
        raise ValueError(f"x must be [B, d] with B = {B} (state's batch), got {tuple(x.shape)}")
    if x.dtype not in _DTYPES:
        raise ValueError(f"x dtype must be one of fp16/bf16/fp32/fp64, got {x.dtype}")
    want = torch.float64 if weight.dtype == torch.float64 else torch.float32
    for name, t in (("weight", weight), ("bias", bias), ("state", state)):
        if t.dtype != want:
            raise ValueError(f"{name} dtype must be {want} (fp32 memory parameters and state; "
                             f"fp64 for gradcheck), got {t.dtype}")
    if tuple(weight.shape) != (4 * N * r, x.shape[1]):
        raise ValueError(f"weight must be [4·N·r, d] = {(4 * N * r, x.shape[1])} (q, k, v, β "
                         f"blocks stacked), got {tuple(weight.shape)}")
    if tuple(bias.shape) != (N * r,):
        raise ValueError(f"bias must be [N·r] = {(N * r,)}, got {tuple(bias.shape)}")
    if delta_weight is not None and (
            not isinstance(delta_weight, torch.Tensor) or delta_weight.dim() != 2
            or delta_weight.shape[1] != N * r or delta_weight.dtype != want
            or delta_weight.device != state.device):
        got = (f"{delta_weight.dtype} {tuple(delta_weight.shape)} on {delta_weight.device}"
               if isinstance(delta_weight, torch.Tensor) else type(delta_weight).__name__)
        raise ValueError(f"delta_weight must be a {want} tensor [outs, N·r] = [outs, {N * r}] "
                         f"on {state.device} or None, got {got}")
    for name, t in (("write", write), ("valid", valid)):
        if t is not None and (not isinstance(t, torch.Tensor) or t.dtype != torch.bool
                              or tuple(t.shape) != (B,) or t.device != state.device):
            got = (f"{t.dtype} {tuple(t.shape)} on {t.device}" if isinstance(t, torch.Tensor)
                   else type(t).__name__)
            raise ValueError(f"{name} must be a bool tensor [B] = ({B},) on {state.device} or "
                             f"None, got {got}")


def fused_step(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, state: torch.Tensor,
               write: torch.Tensor | None = None, valid: torch.Tensor | None = None,
               impl: str = "auto", project: str = "kernel",
               delta_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """One decode token straight from the layer input: projection, gate math, read, write.

    x: [B, d] attention input (any float dtype); weight: [4·N·r, d] fp32, the q, k, v and β
    projections stacked in that order (state head n owns rows n·r … n·r + r − 1 of each block);
    bias: [N·r] fp32 (β's bias); state: [B, N, r, r] fp32 (required: decode follows a prefill
    or a reset to zeros); write: [B] bool, False holds that sequence's state exactly (None =
    all written); valid: [B] bool, False marks padding, whose read is zero (None = all valid).
    Returns (read [B, N, r] fp32, new state [B, N, r, r] fp32), and with `delta_weight`
    ([outs, N·r] fp32: the low-rank correction weights of every corrected projection stacked,
    scale included) also the corrections `read @ delta_weightᵀ` [B, outs] in x's dtype, which
    the Triton kernel computes in the same launch when N = 1 (the projection epilogue).

    impl "triton" is one kernel launch: `project="kernel"` does the projection inside it too,
    `"matmul"` leaves it to one matmul before the launch. "auto" picks Triton for CUDA tensors
    when no gradient is needed, the reference (PyTorch, autograd-capable) otherwise.
    """
    _check_impl(impl, STEP_IMPLS)
    _check_fused(x, weight, bias, state, write, valid, project, delta_weight)
    needs_grad = _needs_grad(x, weight, bias, state, delta_weight)
    if impl == "auto":  # state carries the device, the r and (fp64 for gradcheck) the dtype
        impl = "triton" if state.is_cuda and _triton_usable(state) and not needs_grad \
            else "reference"
    if impl == "reference":
        return reference.fused_step(x, weight, bias, state, write, valid, delta_weight)
    _require_triton(state)
    if needs_grad:
        raise ValueError("impl='triton' fused_step has no backward; call it under "
                         "torch.no_grad() or use impl='reference' when gradients are needed")
    from kernels.deltamem import triton_scan

    return triton_scan.fused_step(x, weight, bias, state, write, valid, project, delta_weight)
