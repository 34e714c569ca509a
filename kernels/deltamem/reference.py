"""PyTorch reference for the δ-mem scan: a chunked form (the CPU path) and a plain loop.

Why a chunked form: a Python loop over tokens costs one interpreter round trip and a handful of
tiny kernel launches per token, which dominates everything else for an 8×8 state. The chunked
form below loops over chunks of C tokens only; inside a chunk the recurrence is solved as a
batched unit-lower-triangular system, one per state row, so the cost is a few large tensor ops.

Derivation (per batch, head and state row i; λ, β, v are the row's scalars):
    s_t = λ_t s_{t-1} + u_t k_tᵀ,   u_t = β_t (v_t − s_{t-1}·k_t)
Unrolling inside a chunk that starts from s_0, with a_t = Π_{m<t} λ_m and
D[t, j] = Π_{j<m<t} λ_m for j < t (zero otherwise, so the mask is STRICTLY lower triangular
because token t reads the state before its own write):
    u = β ⊙ (v − a ⊙ (K s_0)) − β ⊙ ((K Kᵀ ⊙ D) u)
    ⇒ (I + Diag(β)(K Kᵀ ⊙ D)) u = β ⊙ v − β ⊙ a ⊙ (K s_0)
    read_t = a_t (q_t·s_0) + Σ_{j<t} (q_t·k_j) D[t, j] u_j
    s_C    = Γ s_0 + Σ_j (Γ / Γ_j) u_j k_j,  Γ_j = Π_{m≤j} λ_m, Γ = Γ_C
The system matrix does not depend on s_0, so it is solved for all chunks of a segment at once
with the right-hand sides [β ⊙ v | Diag(β ⊙ a) K] (u = u0 − W s_0); only the cheap state hand-off
is serial. Decay ratios are formed as exp of differences of float64 log-λ cumulative sums, so
they never divide by an underflowed product; log λ is clamped at log(1e-30) so β = 1 exactly
(reachable in bf16) stays finite (its gradient through the decay is then dropped).
"""

from __future__ import annotations

import torch

# Measured on 2 CPU cores: C = 16 beats 8, 32 and 64 for r ≤ 16 (per-chunk overhead vs
# C² work per row); the result does not depend on C beyond rounding.
CHUNK = 16
# Bound on elements of one [B, N, chunks, r, C, C] intermediate; segments of chunks are
# processed one after another so memory stays bounded for long T and large r.
_SEGMENT_ELEMENTS = 1 << 22
_MIN_LAMBDA = 1e-30


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 accumulation always; fp64 inputs (gradcheck) keep fp64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
              state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-by-token ground truth: read S_{t-1} q_t, then write. Shapes as in `scan`."""
    B, T, N, r = q.shape
    cd = compute_dtype(q.dtype)
    S = (torch.zeros(B, N, r, r, dtype=cd, device=q.device) if state is None
         else state.to(cd))  # [B, N, r, r] rows = value dims
    reads = []
    for t in range(T):
        qt, kt, vt, bt = (x[:, t].to(cd) for x in (q, k, v, beta))  # [B, N, r]
        reads.append(torch.einsum("bnij,bnj->bni", S, qt))
        sk = torch.einsum("bnij,bnj->bni", S, kt)  # [B, N, r]
        S = (1 - bt)[..., None] * S + (bt * (vt - sk))[..., None] * kt[..., None, :]
    out = torch.stack(reads, dim=1) if T else q.new_zeros(B, 0, N, r, dtype=cd)
    return out.to(q.dtype), S


def step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
         state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode token. q, k, v, beta: [B, N, r]; state: [B, N, r, r]."""
    cd = compute_dtype(q.dtype)
    S = state.to(cd)  # [B, N, r, r]
    qt, kt, vt, bt = (x.to(cd) for x in (q, k, v, beta))  # [B, N, r]
    read = torch.einsum("bnij,bnj->bni", S, qt)
    sk = torch.einsum("bnij,bnj->bni", S, kt)
    S = (1 - bt)[..., None] * S + (bt * (vt - sk))[..., None] * kt[..., None, :]
    return read.to(q.dtype), S


def _segment(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, b: torch.Tensor,
             S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scan G whole chunks. q, k, v, b: [B, N, G, C, r] in compute dtype; S: [B, N, r, r]."""
    B, N, G, C, r = q.shape
    cd = q.dtype
    logl = (1 - b.double()).clamp_min(_MIN_LAMBDA).log().transpose(-1, -2)  # [B, N, G, r, C]
    g = logl.cumsum(dim=-1)  # log Γ_t, inclusive
    ga = g - logl  # log a_t, exclusive
    a = ga.exp().to(cd)  # [B, N, G, r, C]
    e = (g[..., -1:] - g).exp().to(cd)  # Γ / Γ_j, [B, N, G, r, C]
    gam = g[..., -1].exp().to(cd)[..., None]  # Γ, [B, N, G, r, 1]
    tril = torch.ones(C, C, dtype=torch.bool, device=q.device).tril(-1)  # t > j
    # log D[t, j] = log a_t − log Γ_j, exact in f64; ≤ 0 below the diagonal, masked above it
    D = (ga[..., :, None] - g[..., None, :]).to(cd).clamp_max(0).exp() * tril  # [B,N,G,r,C,C]
    kT = k.transpose(-1, -2)  # [B, N, G, r, C]
    bT = b.transpose(-1, -2)  # [B, N, G, r, C]
    M = torch.eye(C, dtype=cd, device=q.device) + bT[..., None] * (k @ kT)[:, :, :, None] * D
    # P = M⁻¹ Diag(β): u = P v − P Diag(a) (K s_0), [B, N, G, r, C, C]
    P = torch.linalg.solve_triangular(M, torch.diag_embed(bT), upper=False, unitriangular=True)
    u0 = (P @ v.transpose(-1, -2)[..., None])[..., 0]  # [B, N, G, r, C]
    Pa = P * a[..., None, :]  # [B, N, G, r, C, C]
    ek = (e[..., None] * k[:, :, :, None])  # [B, N, G, r, C, r]: row i's write weights
    starts, us = [], []
    for kT_c, u0_c, Pa_c, gam_c, ek_c in zip(*(x.unbind(2) for x in (kT, u0, Pa, gam, ek))):
        starts.append(S)
        Ks = S @ kT_c  # [B, N, r, C]: s_i · k_t
        u = u0_c - (Pa_c @ Ks[..., None])[..., 0]  # [B, N, r, C]
        us.append(u)
        S = gam_c * S + (u[..., None, :] @ ek_c)[..., 0, :]  # [B, N, r, r]
    S0 = torch.stack(starts, dim=2)  # [B, N, G, r, r]
    U = torch.stack(us, dim=2)  # [B, N, G, r, C]
    QK = (q @ kT)[:, :, :, None] * D  # [B, N, G, r, C, C]
    reads = a * (S0 @ q.transpose(-1, -2)) + (QK @ U[..., None])[..., 0]  # [B, N, G, r, C]
    return reads.transpose(-1, -2), S


def chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
            state: torch.Tensor | None = None, chunk: int = CHUNK,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked scan, autograd-capable. q, k, v, beta: [B, T, N, r]; state: [B, N, r, r]."""
    B, T, N, r = q.shape
    cd = compute_dtype(q.dtype)
    S = (torch.zeros(B, N, r, r, dtype=cd, device=q.device) if state is None
         else state.to(cd))  # [B, N, r, r]
    if T == 0:
        return q.new_zeros(B, 0, N, r), S
    C = min(chunk, T)
    nc = -(-T // C)
    pad = nc * C - T

    def prep(x: torch.Tensor) -> torch.Tensor:
        # zero padding = (q, k, v, β) = 0: λ = 1, no write, reads discarded
        x = torch.nn.functional.pad(x.to(cd), (0, 0, 0, 0, 0, pad))  # [B, nc*C, N, r]
        return x.reshape(B, nc, C, N, r).permute(0, 3, 1, 2, 4)  # [B, N, nc, C, r]

    qc, kc, vc, bc = (prep(x) for x in (q, k, v, beta))
    G = max(1, _SEGMENT_ELEMENTS // (B * N * r * C * C))
    outs = []
    for c0 in range(0, nc, G):
        sl = slice(c0, c0 + G)
        out, S = _segment(qc[:, :, sl], kc[:, :, sl], vc[:, :, sl], bc[:, :, sl], S)
        outs.append(out)
    reads = torch.cat(outs, dim=2).permute(0, 2, 3, 1, 4).reshape(B, nc * C, N, r)[:, :T]
    return reads.to(q.dtype), S  # [B, T, N, r], [B, N, r, r]
