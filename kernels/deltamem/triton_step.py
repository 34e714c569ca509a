"""Fused Triton decode step for δ-mem (T = 1): gate, read and update in one launch.

Why a separate kernel: in decode every layer advances its state by one token per generated
token. Expressed with PyTorch ops that is ~8 small launches per layer per token, which for an
8×8 state costs far more than the arithmetic; one program per (batch, state head) loads the
r×r fp32 state, reads S q (before the write, as in prefill), forms λ = 1 − β and writes the
updated state back in a single launch.
"""

from __future__ import annotations

import torch
import triton.language as tl

from kernels.deltamem._jit import empty, kernel, launch_config


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
