"""Chunk-parallel Triton forward for long prefills: parallel over chunks of T, not only over rows.

Why: the token-serial forward (`triton_scan`) walks all T tokens in order in each program, so at
B·N = 1 a 32k-token prefill is a 32k-step dependency chain on a few SMs. Per state row i the
update is affine in the row, s ← s A_t + β_t v_t k_tᵀ with A_t = λ_t I − β_t k_t k_tᵀ, so a chunk
of C tokens maps its start row s to s P + b with P = Π_t A_t (r×r) and b the chunk's result from
a zero start. Three launches:

1. `deltamem_chunk_transfer`: one program per (batch, chunk, head, block of rows) computes P
   and b for its rows by walking its chunk's C tokens (P starts as I, b as 0). All chunks run at
   once.
2. `deltamem_chunk_compose`: one program per (batch, head, block of rows) walks the T/C chunks
   in order, s ← s P_c + b_c, storing every chunk's start state and the final state.
3. the token-serial forward of `triton_scan` over [B·T/C, C, N, r], each chunk starting from its
   stored state, writes the reads. All chunks run at once.

The serial chain is T/C compose steps plus 2·C token steps instead of T token steps; C ≈ √T.
P costs r³ numbers per chunk and per head (2 KB at r = 8, 16 KB at r = 16), so this path is for
r ≤ 16 (MAX_CHUNKED_R) and inference (no backward: training uses the token-serial scan, which
has one). Tokens padding T up to a multiple of C have k = v = β = 0: A = I, b = 0, exactly.
"""

from __future__ import annotations

import math

import torch
import triton.language as tl

from kernels.deltamem._jit import empty, kernel, launch_config

MAX_CHUNKED_R = 16
# Rows per program in the transfer and compose kernels: their per-row state is r×r.
CHUNK_ROWS = 8


def chunk_config(r: int) -> tuple[int, int, int]:
    """(BLOCK_R, BLOCK_ROWS, num_warps) for kernels holding BLOCK_ROWS × r × r fp32 values:
    ≤ 16 per thread."""
    block, _ = launch_config(r)
    rows = min(block, CHUNK_ROWS)
    return block, rows, max(1, rows * block * block // 512)


def default_chunk(T: int) -> int:
    """Power of two near √T in [16, 256]: balances the T/C compose steps against 2·C token steps."""
    return int(min(256, max(16, 2 ** round(math.log2(max(T, 1)) / 2))))


def deltamem_chunk_transfer(K, V, Beta, P, Bc, T, NC, N, R,
                            BLOCK_R: tl.constexpr, BLOCK_ROWS: tl.constexpr, C: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)  # (b * NC + c) * N + n
    n = pid % N
    bc = pid // N  # b * NC + c
    b = bc // NC
    c = bc % NC
    rows = tl.program_id(1) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)  # state rows i
    js = tl.arange(0, BLOCK_R)  # basis index j of P[i, j, :]
    cols = tl.arange(0, BLOCK_R)  # key dims m
    rmask = rows < R
    cmask = cols < R
    # P[i] = I (as [i, j, m]) and b = 0 for this block of rows
    Pm = tl.where((js[None, :, None] == cols[None, None, :]) & (rows[:, None, None] < R)
                  & (cols[None, None, :] < R), 1.0, 0.0)
    Pm = Pm + tl.zeros([BLOCK_ROWS, BLOCK_R, BLOCK_R], dtype=tl.float32)
    bv = tl.zeros([BLOCK_ROWS, BLOCK_R], dtype=tl.float32)
    base = b * T * N * R + n * R
    for i in range(C):
        t = c * C + i
        off = base + t * N * R
        cv = cmask & ((cols * 0 + t) < T)  # vectors, not scalars: the interpreter needs them
        rv = rmask & ((rows * 0 + t) < T)
        k = tl.load(K + off + cols, mask=cv, other=0.0).to(tl.float32)
        v = tl.load(V + off + rows, mask=rv, other=0.0).to(tl.float32)
        beta = tl.load(Beta + off + rows, mask=rv, other=0.0).to(tl.float32)
        lam = 1.0 - beta
        pk = tl.sum(Pm * k[None, None, :], axis=2)  # [ROWS, J]: P[i] k
        Pm = Pm * lam[:, None, None] - (beta[:, None] * pk)[:, :, None] * k[None, None, :]
        bk = tl.sum(bv * k[None, :], axis=1)
        bv = bv * lam[:, None] + (beta * (v - bk))[:, None] * k[None, :]
    # P: [B, NC, N, R, R(j), R(m)], b: [B, NC, N, R, R(m)]
    poff = pid * R * R * R + rows[:, None, None] * R * R + js[None, :, None] * R \
        + cols[None, None, :]
    pmask = rmask[:, None, None] & (js[None, :, None] < R) & cmask[None, None, :]
    tl.store(P + poff, Pm, mask=pmask)
    boff = pid * R * R + rows[:, None] * R + cols[None, :]
    tl.store(Bc + boff, bv, mask=rmask[:, None] & cmask[None, :])


def deltamem_chunk_compose(P, Bc, S0, Starts, SFinal, NC, N, R, HAS_S0: tl.constexpr,
                           BLOCK_R: tl.constexpr, BLOCK_ROWS: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)  # b * N + n
    b = pid // N
    n = pid % N
    rows = tl.program_id(1) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    js = tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_R)
    rmask = rows < R
    cmask = cols < R
    smask = rmask[:, None] & cmask[None, :]
    soff = rows[:, None] * R + cols[None, :]
    pmask = rmask[:, None, None] & (js[None, :, None] < R) & cmask[None, None, :]
    prow = rows[:, None, None] * R * R + js[None, :, None] * R + cols[None, None, :]
    if HAS_S0:
        s = tl.load(S0 + pid * R * R + soff, mask=smask, other=0.0)
    else:
        s = tl.zeros([BLOCK_ROWS, BLOCK_R], dtype=tl.float32)
    for c in range(NC):
        blk = (b * NC + c) * N + n  # chunk c of this (batch, head)
        tl.store(Starts + blk * R * R + soff, s, mask=smask)
        Pc = tl.load(P + blk * R * R * R + prow, mask=pmask, other=0.0)
        bc = tl.load(Bc + blk * R * R + soff, mask=smask, other=0.0)
        # s[i, m] ← Σ_j s[i, j] P[i, j, m] + b[i, m]; s's columns index j here
        s = tl.sum(s[:, :, None] * Pc, axis=1) + bc
    tl.store(SFinal + pid * R * R + soff, s, mask=smask)


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
            state: torch.Tensor | None, chunk: int | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk-parallel scan, no autograd. Inputs [B, T, N, r] contiguous, T ≥ 1, r ≤ 16;
    state [B, N, r, r] fp32 or None. Returns reads [B, T, N, r] (q's dtype), final state."""
    from kernels.deltamem import triton_scan

    B, T, N, r = q.shape
    C = chunk or default_chunk(T)
    nc = -(-T // C)
    block, rows, warps = chunk_config(r)
    grid_rows = -(-r // rows)
    P = empty((B, nc, N, r, r, r), torch.float32, q.device)
    bc = empty((B, nc, N, r, r), torch.float32, q.device)
    kernel(deltamem_chunk_transfer)[(B * nc * N, grid_rows)](
        k, v, beta, P, bc, T, nc, N, r, BLOCK_R=block, BLOCK_ROWS=rows, C=C, num_warps=warps,
        enable_fp_fusion=True)
    starts = empty((B, nc, N, r, r), torch.float32, q.device)
    s_final = empty((B, N, r, r), torch.float32, q.device)
    kernel(deltamem_chunk_compose)[(B * N, grid_rows)](
        P, bc, state if state is not None else s_final, starts, s_final, nc, N, r,
        HAS_S0=state is not None, BLOCK_R=block, BLOCK_ROWS=rows, num_warps=warps,
        enable_fp_fusion=True)
    pad = nc * C - T
    if pad:  # zero tokens: no write, reads discarded
        q, k, v, beta = (torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad)) for x in (q, k, v, beta))
    view = [x.view(B * nc, C, N, r) for x in (q, k, v, beta)]
    reads, _, _ = triton_scan.forward(*view, starts.view(B * nc, N, r, r), store_ckpt=False)
    return reads.view(B, nc * C, N, r)[:, :T], s_final
