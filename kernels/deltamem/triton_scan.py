"""Triton kernels for δ-mem: prefill scan (forward, backward, autograd) and the decode step.

Why token-serial: one δ-mem state is r×r (r ≤ 64, 8 by default), so one program per
(batch, state head) keeps the whole fp32 state in registers and walks the tokens in order; the
cost is the serial dependency chain and the bytes of q, k, v, β, not FLOPs (docs/deltamem.md §9).
Reads come before writes, exactly as in `reference.recurrent`.

The backward walks time in reverse on the adjoint G = ∂L/∂S_t. The forward stores the state at
the start of every CKPT-token chunk; the backward recomputes the chunk's states from that
checkpoint into a per-program scratch buffer and then runs the chunk in reverse:
    u = β(v − S k),  S' = λ S + u kᵀ,  read = S q
    du = G k,  dλ = rowsum(G ⊙ S),  dβ = du (v − S k) − dλ,  dv = β du
    dk = Gᵀ u − Sᵀ (β du),  dq = Sᵀ dread
    G ← λ G − (β du) kᵀ + dread qᵀ
Tokens past T inside the last chunk are masked loads (q = k = v = β = 0), which leave both the
state and the adjoint unchanged, so no scalar branches on T are needed.

The decode step (T = 1) is its own kernel: in decode every layer advances its state by one
token per generated token, which as PyTorch ops is ~8 small launches per layer per token and
costs far more than the arithmetic for an 8×8 state; one launch loads the state, reads S q
(before the write, as in prefill), forms λ = 1 − β and writes the new state back.
"""

from __future__ import annotations

import torch
import triton.language as tl

from kernels.deltamem._jit import empty, kernel, launch_config

CKPT = 64
# State rows per forward program. Every token's reads and updates reduce over the r columns of
# each row; with all r = 64 rows in one program those reductions cross 8 warps (shared memory
# and a barrier per token), with 8 rows they stay inside one warp (shuffles only) and the
# state spreads over r / 8 programs.
FWD_ROWS = 8


def fwd_config(r: int) -> tuple[int, int, int]:
    """(BLOCK_R, BLOCK_ROWS, num_warps) of the forward scan: ≤ 16 state elements per thread."""
    block, _ = launch_config(r)
    rows = min(block, FWD_ROWS)
    return block, rows, max(1, rows * block // 512)


def deltamem_scan_fwd(Q, K, V, Beta, S0, Out, SFinal, Ckpt, T, N, R, NCK,
                      HAS_S0: tl.constexpr, STORE_CKPT: tl.constexpr,
                      BLOCK_R: tl.constexpr, BLOCK_ROWS: tl.constexpr, CKPT_T: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)  # b * N + n
    b = pid // N
    n = pid % N
    # rows are independent delta rules sharing q and k: program (pid, j) owns rows
    # j·BLOCK_ROWS …, so a large state spreads over several programs instead of one
    rows = tl.program_id(1) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)  # value dims (state rows)
    cols = tl.arange(0, BLOCK_R)  # key dims (state columns)
    rmask = rows < R
    cmask = cols < R
    smask = rmask[:, None] & cmask[None, :]
    soff = rows[:, None] * R + cols[None, :]  # [BLOCK_ROWS, BLOCK_R]
    if HAS_S0:
        S = tl.load(S0 + pid * R * R + soff, mask=smask, other=0.0).to(tl.float32)
    else:
        S = tl.zeros([BLOCK_ROWS, BLOCK_R], dtype=tl.float32)
    base = b * T * N * R + n * R  # token t of this head lives at base + t * N * R
    # Token t + 1 is loaded while token t is processed, so the global-load latency overlaps the
    # serial state update instead of adding to it.
    cvalid = cmask & ((cols * 0) < T)  # vectors, not scalars: the interpreter needs them
    rvalid = rmask & ((rows * 0) < T)
    q_n = tl.load(Q + base + cols, mask=cvalid, other=0.0).to(tl.float32)
    k_n = tl.load(K + base + cols, mask=cvalid, other=0.0).to(tl.float32)
    v_n = tl.load(V + base + rows, mask=rvalid, other=0.0).to(tl.float32)
    b_n = tl.load(Beta + base + rows, mask=rvalid, other=0.0).to(tl.float32)
    for t in range(T):
        q, k, v, beta = q_n, k_n, v_n, b_n
        off = base + t * N * R
        cnxt = cmask & ((cols * 0 + t + 1) < T)
        rnxt = rmask & ((rows * 0 + t + 1) < T)
        q_n = tl.load(Q + off + N * R + cols, mask=cnxt, other=0.0).to(tl.float32)
        k_n = tl.load(K + off + N * R + cols, mask=cnxt, other=0.0).to(tl.float32)
        v_n = tl.load(V + off + N * R + rows, mask=rnxt, other=0.0).to(tl.float32)
        b_n = tl.load(Beta + off + N * R + rows, mask=rnxt, other=0.0).to(tl.float32)
        if STORE_CKPT:
            if t % CKPT_T == 0:
                tl.store(Ckpt + (pid * NCK + t // CKPT_T) * R * R + soff, S, mask=smask)
        read = tl.sum(S * q[None, :], axis=1)  # [BLOCK_ROWS] before the write
        tl.store(Out + off + rows, read.to(Out.dtype.element_ty), mask=rmask)
        sk = tl.sum(S * k[None, :], axis=1)
        S = S * (1.0 - beta)[:, None] + (beta * (v - sk))[:, None] * k[None, :]
    tl.store(SFinal + pid * R * R + soff, S, mask=smask)


def deltamem_scan_bwd(Q, K, V, Beta, Ckpt, DOut, DSFinal, DQ, DK, DV, DBeta, DS0, Scratch,
                      T, N, R, NCK, HAS_DSF: tl.constexpr,
                      BLOCK_R: tl.constexpr, CKPT_T: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    b = pid // N
    n = pid % N
    rows = tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_R)
    rmask = rows < R
    cmask = cols < R
    smask = rmask[:, None] & cmask[None, :]
    soff = rows[:, None] * R + cols[None, :]
    if HAS_DSF:
        G = tl.load(DSFinal + pid * R * R + soff, mask=smask, other=0.0).to(tl.float32)
    else:
        G = tl.zeros([BLOCK_R, BLOCK_R], dtype=tl.float32)
    base = b * T * N * R + n * R
    scratch = Scratch + pid * CKPT_T * R * R
    for cc in range(NCK):
        c = NCK - 1 - cc
        S = tl.load(Ckpt + (pid * NCK + c) * R * R + soff, mask=smask, other=0.0)
        for i in range(CKPT_T):  # recompute S_{t-1} for every token of the chunk
            t = c * CKPT_T + i
            valid = (rows * 0 + t) < T  # [BLOCK_R] (a vector: the interpreter needs it)
            off = base + t * N * R
            tl.store(scratch + i * R * R + soff, S, mask=smask)
            k = tl.load(K + off + cols, mask=cmask & valid, other=0.0).to(tl.float32)
            v = tl.load(V + off + rows, mask=rmask & valid, other=0.0).to(tl.float32)
            beta = tl.load(Beta + off + rows, mask=rmask & valid, other=0.0).to(tl.float32)
            sk = tl.sum(S * k[None, :], axis=1)
            S = S * (1.0 - beta)[:, None] + (beta * (v - sk))[:, None] * k[None, :]
        tl.debug_barrier()
        for j in range(CKPT_T):
            i = CKPT_T - 1 - j
            t = c * CKPT_T + i
            valid = (rows * 0 + t) < T  # [BLOCK_R] (a vector: the interpreter needs it)
            off = base + t * N * R
            S = tl.load(scratch + i * R * R + soff, mask=smask, other=0.0)  # S_{t-1}
            q = tl.load(Q + off + cols, mask=cmask & valid, other=0.0).to(tl.float32)
            k = tl.load(K + off + cols, mask=cmask & valid, other=0.0).to(tl.float32)
            v = tl.load(V + off + rows, mask=rmask & valid, other=0.0).to(tl.float32)
            beta = tl.load(Beta + off + rows, mask=rmask & valid, other=0.0).to(tl.float32)
            dout = tl.load(DOut + off + rows, mask=rmask & valid, other=0.0).to(tl.float32)
            e = v - tl.sum(S * k[None, :], axis=1)  # [BLOCK_R] rows
            du = tl.sum(G * k[None, :], axis=1)
            dlam = tl.sum(G * S, axis=1)
            de = beta * du
            dk = tl.sum(G * (beta * e)[:, None], axis=0) - tl.sum(S * de[:, None], axis=0)
            dq = tl.sum(S * dout[:, None], axis=0)  # [BLOCK_R] cols
            G = G * (1.0 - beta)[:, None] - de[:, None] * k[None, :] + dout[:, None] * q[None, :]
            tl.store(DQ + off + cols, dq.to(DQ.dtype.element_ty), mask=cmask & valid)
            tl.store(DK + off + cols, dk.to(DK.dtype.element_ty), mask=cmask & valid)
            tl.store(DV + off + rows, de.to(DV.dtype.element_ty), mask=rmask & valid)
            db = du * e - dlam
            tl.store(DBeta + off + rows, db.to(DBeta.dtype.element_ty), mask=rmask & valid)
        tl.debug_barrier()  # the next chunk's recompute overwrites the scratch
    tl.store(DS0 + pid * R * R + soff, G, mask=smask)


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
            state: torch.Tensor | None, store_ckpt: bool,
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Launch the forward. Inputs contiguous [B, T, N, r]; state [B, N, r, r] fp32 or None."""
    B, T, N, r = q.shape
    block, rows, warps = fwd_config(r)
    nck = -(-T // CKPT)
    out = empty(q.shape, q.dtype, q.device)  # [B, T, N, r]
    s_final = empty((B, N, r, r), torch.float32, q.device)
    ckpt = empty((B, N, nck, r, r), torch.float32, q.device) if store_ckpt else s_final
    kernel(deltamem_scan_fwd)[(B * N, block // rows)](
        q, k, v, beta, state if state is not None else s_final, out, s_final, ckpt,
        T, N, r, nck, HAS_S0=state is not None, STORE_CKPT=store_ckpt,
        BLOCK_R=block, BLOCK_ROWS=rows, CKPT_T=CKPT, num_warps=warps, enable_fp_fusion=True)
    return out, s_final, (ckpt if store_ckpt else None)


def backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
             ckpt: torch.Tensor, dout: torch.Tensor, ds_final: torch.Tensor | None,
             ) -> tuple[torch.Tensor, ...]:
    """Launch the backward; returns dq, dk, dv, dbeta (input dtypes) and dstate0 (fp32)."""
    B, T, N, r = q.shape
    block, warps = launch_config(r)
    nck = ckpt.shape[2]
    dq, dk, dv, dbeta = (empty(x.shape, x.dtype, x.device) for x in (q, k, v, beta))
    ds0 = empty((B, N, r, r), torch.float32, q.device)
    scratch = empty((B * N, CKPT, r, r), torch.float32, q.device)
    kernel(deltamem_scan_bwd)[(B * N,)](
        q, k, v, beta, ckpt, dout, ds_final if ds_final is not None else ds0,
        dq, dk, dv, dbeta, ds0, scratch, T, N, r, nck, HAS_DSF=ds_final is not None,
        BLOCK_R=block, CKPT_T=CKPT, num_warps=warps, enable_fp_fusion=True)
    return dq, dk, dv, dbeta, ds0


class ScanFunction(torch.autograd.Function):
    """Autograd wrapper: forward stores chunk checkpoints, backward recomputes from them."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        out, s_final, ckpt = forward(q, k, v, beta, state, store_ckpt=True)
        ctx.save_for_backward(q, k, v, beta, ckpt)
        ctx.has_state = state is not None
        return out, s_final

    @staticmethod
    def backward(ctx, dout: torch.Tensor | None, ds_final: torch.Tensor | None):
        q, k, v, beta, ckpt = ctx.saved_tensors
        dout = torch.zeros_like(q) if dout is None else dout.contiguous()
        ds_final = None if ds_final is None else ds_final.float().contiguous()
        dq, dk, dv, dbeta, ds0 = backward(q, k, v, beta, ckpt, dout, ds_final)
        return dq, dk, dv, dbeta, (ds0 if ctx.has_state else None)


def scan(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
         state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton scan; autograd-capable when any input requires grad."""
    if q.shape[1] == 0:  # nothing to launch; the reference passes the state through
        from kernels.deltamem.reference import chunked

        return chunked(q, k, v, beta, state)
    q, k, v, beta = (x.contiguous() for x in (q, k, v, beta))
    state = None if state is None else state.contiguous()
    tensors = (q, k, v, beta) + (() if state is None else (state,))
    if torch.is_grad_enabled() and any(x.requires_grad for x in tensors):
        return ScanFunction.apply(q, k, v, beta, state)
    out, s_final, _ = forward(q, k, v, beta, state, store_ckpt=False)
    return out, s_final


def deltamem_step_kernel(Q, K, V, Beta, SIn, Read, SOut, R, BLOCK_R: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)  # b * N + n
    rows = tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_R)
    rmask = rows < R
    cmask = cols < R
    smask = rmask[:, None] & cmask[None, :]
    soff = pid * R * R + rows[:, None] * R + cols[None, :]  # [BLOCK_R, BLOCK_R]
    S = tl.load(SIn + soff, mask=smask, other=0.0).to(tl.float32)
    q = tl.load(Q + pid * R + cols, mask=cmask, other=0.0).to(tl.float32)
    k = tl.load(K + pid * R + cols, mask=cmask, other=0.0).to(tl.float32)
    v = tl.load(V + pid * R + rows, mask=rmask, other=0.0).to(tl.float32)
    beta = tl.load(Beta + pid * R + rows, mask=rmask, other=0.0).to(tl.float32)
    read = tl.sum(S * q[None, :], axis=1)  # [BLOCK_R]
    sk = tl.sum(S * k[None, :], axis=1)
    S = S * (1.0 - beta)[:, None] + (beta * (v - sk))[:, None] * k[None, :]
    tl.store(Read + pid * R + rows, read.to(Read.dtype.element_ty), mask=rmask)
    tl.store(SOut + soff, S, mask=smask)


def step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
         state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k, v, beta: [B, N, r]; state: [B, N, r, r] fp32 -> read [B, N, r], new state."""
    B, N, r = q.shape
    block, warps = launch_config(r)
    q, k, v, beta, state = (x.contiguous() for x in (q, k, v, beta, state))
    read = empty(q.shape, q.dtype, q.device)  # [B, N, r]
    new_state = empty(state.shape, torch.float32, q.device)  # [B, N, r, r]
    kernel(deltamem_step_kernel)[(B * N,)](
        q, k, v, beta, state, read, new_state, r,
        BLOCK_R=block, num_warps=warps, enable_fp_fusion=True)
    return read, new_state


# Below this |z|, tanh comes from its odd Taylor series (relative error < 1e-9 there); above it
# from (1 − e^{−2|z|}) / (1 + e^{−2|z|}), whose cancellation near 0 the series avoids. Triton has
# no tanh of its own that both the interpreter and the compiler accept.
TANH_SERIES_BELOW = 0.125


def deltamem_fused_step_kernel(X, W, Z, Bias, Write, Valid, SIn, Read, SOut, WD, Corr,
                               D, N, R, OUTS,
                               PROJECT: tl.constexpr, HAS_WRITE: tl.constexpr,
                               HAS_VALID: tl.constexpr, EPILOGUE: tl.constexpr,
                               BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
                               BLOCK_O: tl.constexpr, TANH_SMALL: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)  # b * N + n
    b = pid // N
    n = pid % N
    NR = N * R
    rows = tl.arange(0, BLOCK_R)
    rmask = rows < R
    smask = rmask[:, None] & rmask[None, :]
    soff = pid * R * R + rows[:, None] * R + rows[None, :]  # [BLOCK_R, BLOCK_R]
    wrow = n * R + rows  # this head's row inside each of the q, k, v, β blocks of W / Z
    if PROJECT:  # z = W x for this head's 4r rows, x read once per d-block
        zq = tl.zeros([BLOCK_R], dtype=tl.float32)
        zk = tl.zeros([BLOCK_R], dtype=tl.float32)
        zv = tl.zeros([BLOCK_R], dtype=tl.float32)
        zb = tl.zeros([BLOCK_R], dtype=tl.float32)
        dd = tl.arange(0, BLOCK_D)
        for d0 in range(0, D, BLOCK_D):
            dmask = (d0 + dd) < D
            x = tl.load(X + b * D + d0 + dd, mask=dmask, other=0.0).to(tl.float32)
            tile = wrow[:, None] * D + d0 + dd[None, :]  # [BLOCK_R, BLOCK_D]
            tmask = rmask[:, None] & dmask[None, :]
            zq += tl.sum(tl.load(W + tile, mask=tmask, other=0.0) * x[None, :], axis=1)
            zk += tl.sum(tl.load(W + NR * D + tile, mask=tmask, other=0.0) * x[None, :], axis=1)
            zv += tl.sum(tl.load(W + 2 * NR * D + tile, mask=tmask, other=0.0) * x[None, :],
                         axis=1)
            zb += tl.sum(tl.load(W + 3 * NR * D + tile, mask=tmask, other=0.0) * x[None, :],
                         axis=1)
    else:  # z = W x precomputed by the caller, [B, 4·N·r]
        zrow = Z + b * 4 * NR + wrow
        zq = tl.load(zrow, mask=rmask, other=0.0)
        zk = tl.load(zrow + NR, mask=rmask, other=0.0)
        zv = tl.load(zrow + 2 * NR, mask=rmask, other=0.0)
        zb = tl.load(zrow + 3 * NR, mask=rmask, other=0.0)
    # q, k = L2norm(tanh(z)), both at once as the columns of [BLOCK_R, 2]; padded lanes stay 0
    z = tl.join(zq, zk)
    a = tl.abs(z)
    e = tl.exp(-2.0 * a)
    z2 = z * z
    t = tl.where(a < TANH_SMALL,
                 a * (1.0 + z2 * (-1.0 / 3.0 + z2 * (2.0 / 15.0 + z2 * (-17.0 / 315.0)))),
                 (1.0 - e) / (1.0 + e))
    t = tl.where(z < 0, -t, t)
    t = t / tl.maximum(tl.sqrt(tl.sum(t * t, axis=0)), 1e-6)[None, :]
    q, k = tl.split(t)
    beta = tl.sigmoid(zb + tl.load(Bias + wrow, mask=rmask, other=0.0))
    beta = tl.where(rmask, beta, 0.0)
    v = zv
    if HAS_WRITE:  # 0: hold the state exactly (β = 0 ⇒ λ = 1, no write)
        beta = beta * tl.load(Write + b + rows * 0).to(tl.float32)  # [BLOCK_R], one value
    if HAS_VALID:  # 0: padding, whose read is zero
        q = q * tl.load(Valid + b + rows * 0).to(tl.float32)
    S = tl.load(SIn + soff, mask=smask, other=0.0)
    read = tl.sum(S * q[None, :], axis=1)  # read before write
    sk = tl.sum(S * k[None, :], axis=1)
    S = S * (1.0 - beta)[:, None] + (beta * (v - sk))[:, None] * k[None, :]
    tl.store(Read + b * NR + wrow, read, mask=rmask)
    tl.store(SOut + soff, S, mask=smask)
    if EPILOGUE:  # N = 1: the low-rank corrections W^Δ read, [OUTS] in Corr's dtype
        oo = tl.arange(0, BLOCK_O)
        for o0 in range(0, OUTS, BLOCK_O):
            omask = (o0 + oo) < OUTS
            wd = tl.load(WD + (o0 + oo)[:, None] * R + rows[None, :],
                         mask=omask[:, None] & rmask[None, :], other=0.0)  # [BLOCK_O, BLOCK_R]
            corr = tl.sum(wd * read[None, :], axis=1)
            tl.store(Corr + b * OUTS + o0 + oo, corr.to(Corr.dtype.element_ty), mask=omask)


def fused_step(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, state: torch.Tensor,
               write: torch.Tensor | None, valid: torch.Tensor | None,
               project: str = "kernel", delta_weight: torch.Tensor | None = None,
               ) -> tuple[torch.Tensor, ...]:
    """One launch per layer and token: projection (project="kernel"; "matmul" leaves it to one
    cuBLAS matmul first), tanh + L2 on q and k, sigmoid gate, masks, read, update.
    x [B, d]; weight [4·N·r, d] fp32; bias [N·r]; state [B, N, r, r] fp32; write/valid [B]
    bool or None; delta_weight [outs, N·r] fp32 or None. Returns read [B, N, r] fp32, the new
    state and, with delta_weight, corrections [B, outs] = read @ delta_weightᵀ in x's dtype
    (computed in the same launch when N = 1, by one matmul after it otherwise)."""
    B, N, r = state.shape[0], state.shape[1], state.shape[2]
    d = x.shape[1]
    block, warps = launch_config(r)
    x, weight, bias, state = (t.contiguous() for t in (x, weight, bias, state))
    # masks are often a column of a [B, T] mask: strided, and the kernel indexes them densely
    write, valid = (None if m is None else m.contiguous() for m in (write, valid))
    z = (x.float() @ weight.t()).contiguous() if project == "matmul" else x  # [B, 4·N·r]
    read = empty((B, N, r), torch.float32, x.device)
    new_state = empty(state.shape, torch.float32, x.device)
    epilogue = delta_weight is not None and N == 1
    outs = delta_weight.shape[0] if delta_weight is not None else 0
    corr = empty((B, outs), x.dtype, x.device) if epilogue else read
    wd = delta_weight.contiguous() if epilogue else weight
    kernel(deltamem_fused_step_kernel)[(B * N,)](
        x, weight, z, bias, write if write is not None else bias,
        valid if valid is not None else bias, state, read, new_state, wd, corr, d, N, r, outs,
        PROJECT=project == "kernel", HAS_WRITE=write is not None, HAS_VALID=valid is not None,
        EPILOGUE=epilogue, BLOCK_R=block, BLOCK_D=fused_block_d(r), BLOCK_O=fused_block_o(r),
        TANH_SMALL=TANH_SERIES_BELOW, num_warps=warps, enable_fp_fusion=True)
    if delta_weight is None:
        return read, new_state
    if not epilogue:  # N > 1: every correction mixes all N heads' reads
        corr = (read.reshape(B, N * r) @ delta_weight.t()).to(x.dtype)
    return read, new_state, corr


def fused_block_o(r: int) -> int:
    """Output rows per epilogue tile [BLOCK_O, BLOCK_R]: 8 fp32 weights per thread."""
    block, warps = launch_config(r)
    return max(16, 8 * 32 * warps // block)


def fused_block_d(r: int) -> int:
    """d-block of the in-kernel projection: 8 fp32 elements per thread in each of the 4 weight
    tiles [BLOCK_R, BLOCK_D]. At r = 64 on sm_90, 32 per thread (BLOCK_D = 128) spilled 496
    bytes, and 16 per thread spilled 32 once the correction epilogue was added."""
    block, warps = launch_config(r)
    return max(16, 8 * 32 * warps // block)
