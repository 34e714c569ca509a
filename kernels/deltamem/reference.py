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
The system matrix does not depend on s_0, so P = (I + Diag(β)(K Kᵀ ⊙ D))⁻¹ Diag(β) is formed
for all chunks of a segment at once; the serial loop over chunks only does the cheap hand-off
u = P v − P (a ⊙ K s_0), s_0 ← Γ s_0 + Kᵀ((Γ / Γ_j) ⊙ u), and the reads follow in parallel.
Decay ratios are exp of sums of log λ — D from a masked cumulative sum inside the chunk (no
cancellation), the per-row a, Γ/Γ_j and Γ from float64 cumulative sums — so nothing divides
by an underflowed product; log λ is clamped at log(1e-30) so β = 1 exactly (reachable
in bf16) stays finite (its gradient through the decay is then dropped).
"""

from __future__ import annotations

import torch

# Chunk size trades the serial chunk loop (per-chunk op overhead) against the O(r·C) per-token
# work of the [r, C, C] intra-chunk matrices. Measured on this 2-core CPU (1 thread, T = 2048):
# C = 16 is fastest for r ≤ 16, C = 8 for r = 32 and 64. The result does not depend on C
# beyond rounding.


def default_chunk(r: int) -> int:
    return 16 if r <= 16 else 8


# Bound on elements of one [B, N, chunks, r, C, C] intermediate; segments of chunks are
# processed one after another so memory stays bounded for long T and large r. Small segments
# stay in cache: 2^16–2^18 measured 1.2–1.5× faster than 2^22 at T = 4096, B = 8.
_SEGMENT_ELEMENTS = 1 << 17
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
    logl64 = (1 - b.double()).clamp_min(_MIN_LAMBDA).log().transpose(-1, -2)  # [B, N, G, r, C]
    g = logl64.cumsum(dim=-1)  # log Γ_t, inclusive
    a = (g - logl64).exp().to(cd)  # a_t = Γ_{t-1}, [B, N, G, r, C]
    e = (g[..., -1:] - g).exp().to(cd)  # Γ / Γ_j
    gam = g[..., -1:].exp().to(cd)  # Γ, [B, N, G, r, 1]
    # log D[t, j] = Σ_{j<m<t} log λ_m as a masked cumulative sum over t: only same-sign terms
    # are added, so no cancellation of large cumulative sums; zero (then masked) for t ≤ j.
    strict = torch.ones(C, C, dtype=torch.bool, device=q.device).tril(-1)  # [t, j]: t > j
    Z = logl64.to(cd)[..., :, None] * strict  # [B, N, G, r, C(t), C(j)]
    D = (Z.cumsum(dim=-2) - Z).exp() * strict
    kT = k.transpose(-1, -2)  # [B, N, G, r, C]
    bT = b.transpose(-1, -2)  # [B, N, G, r, C]
    M = torch.eye(C, dtype=cd, device=q.device) + (bT[..., None] * (k @ kT)[:, :, :, None]) * D
    # P = M⁻¹ Diag(β): u = P v − P (a ⊙ K s_0) per row, [B, N, G, r, C, C]
    P = torch.linalg.solve_triangular(M, torch.diag_embed(bT), upper=False, unitriangular=True)
    u0 = (P @ v.transpose(-1, -2)[..., None])[..., 0]  # [B, N, G, r, C]
    # The hand-off is affine in each state row s_i: u_i = u0_i − P_i (a_i ⊙ K s_iᵀ) gives
    #     s_i ← s_i M_i + c_i,  M_i = Γ_i I − Kᵀ Q_iᵀ K,  Q_i = Diag(e_i) P_i Diag(a_i),  c_i = (u0_i ⊙ e_i)ᵀ K,
    # so M and c are formed for all chunks at once and the serial loop is one batched
    # multiply-add per chunk (it was eight operator calls: on CPU their dispatch was the cost).
    Q = e[..., :, None] * P * a[..., None, :]  # [B, N, G, r, C, C]
    KQK = kT[:, :, :, None] @ Q.transpose(-1, -2) @ k[:, :, :, None]  # [B, N, G, r(i), r, r]
    Mt = gam[..., None] * torch.eye(r, dtype=cd, device=q.device) - KQK
    c = (u0 * e) @ k  # [B, N, G, r(i), r]
    Mt = Mt.permute(2, 0, 1, 3, 4, 5).reshape(G, B * N * r, r, r)  # chunk-major, each chunk contiguous
    c = c.permute(2, 0, 1, 3, 4).reshape(G, B * N * r, 1, r)
    s = S.reshape(B * N * r, 1, r)  # one row per (b, n, i)
    starts = []
    for Mt_c, c_c in zip(Mt.unbind(0), c.unbind(0)):
        starts.append(s)
        s = torch.baddbmm(c_c, s, Mt_c)
    S = s.view(B, N, r, r)
    S0 = torch.stack(starts).view(G, B, N, r, r).permute(1, 2, 0, 3, 4)  # [B, N, G, r, r]: each chunk's start
    U = u0 - (P @ (a * (S0 @ kT))[..., None])[..., 0]  # [B, N, G, r, C]
    QK = (q @ kT)[:, :, :, None] * D  # [B, N, G, r, C, C], strictly lower: read before write
    reads = a * (S0 @ q.transpose(-1, -2)) + (QK @ U[..., None])[..., 0]  # [B, N, G, r, C]
    return reads.transpose(-1, -2), S


def chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
            state: torch.Tensor | None = None, chunk: int | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked scan, autograd-capable. q, k, v, beta: [B, T, N, r]; state: [B, N, r, r].
    chunk: tokens per chunk (None: `default_chunk(r)`)."""
    B, T, N, r = q.shape
    cd = compute_dtype(q.dtype)
    S = (torch.zeros(B, N, r, r, dtype=cd, device=q.device) if state is None
         else state.to(cd))  # [B, N, r, r]
    if T == 0:
        return q.new_zeros(B, 0, N, r), S
    C = min(chunk or default_chunk(r), T)
    nc = -(-T // C)
    pad = nc * C - T

    def prep(x: torch.Tensor) -> torch.Tensor:
        # zero padding = (q, k, v, β) = 0: λ = 1, no write, reads discarded (no copy when T fills the chunks)
        x = torch.nn.functional.pad(x.to(cd), (0, 0, 0, 0, 0, pad)) if pad else x.to(cd)  # [B, nc*C, N, r]
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


def gates(z: torch.Tensor, bias: torch.Tensor, N: int, r: int) -> tuple[torch.Tensor, ...]:
    """Raw projections z [..., 4·N·r] (blocks q, k, v, β) -> q, k, v, β each [..., N, r]:
    q, k = L2norm(tanh(·)) per state head (x / max(‖x‖, 1e-6)), β = sigmoid(· + bias)."""
    R = N * r
    # q and k share one tanh and one normalisation: [..., 2, N, r], the L2 norm over r per state head
    qk = torch.nn.functional.normalize(torch.tanh(z[..., : 2 * R].unflatten(-1, (2, N, r))), dim=-1, eps=1e-6)
    q, k = qk.unbind(-3)
    return q, k, z[..., 2 * R: 3 * R].unflatten(-1, (N, r)), torch.sigmoid(z[..., 3 * R:].unflatten(-1, (N, r)) + bias.view(N, r))


def fused_step(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, state: torch.Tensor,
               write: torch.Tensor | None, valid: torch.Tensor | None,
               delta_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Decode step from the layer input (see `kernels.deltamem.fused_step`); autograd-capable."""
    B, N, r = state.shape[0], state.shape[1], state.shape[2]
    cd = compute_dtype(weight.dtype)
    q, k, v, beta = gates(x.to(cd) @ weight.to(cd).t(), bias.to(cd), N, r)  # [B, N, r] each
    if write is not None:  # not written: β = 0 holds the state exactly (λ = 1, no write term)
        beta = beta * write.to(cd)[:, None, None]
    if valid is not None:  # padding reads zero
        q = q * valid.to(cd)[:, None, None]
    read, S = step(q, k, v, beta, state)
    if delta_weight is None:
        return read.to(cd), S
    corr = (read.reshape(B, N * r) @ delta_weight.to(cd).t()).to(x.dtype)  # [B, outs]
    return read.to(cd), S, corr


def decode_weights(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The operands of `decode_step` / `decode_read` from `fused_step`'s; built once per weight
    change, not per token: weight [4·N·r, d] (blocks q, k, v, β) -> w_t [d, 4·N·r] contiguous,
    so the projection is one addmm with no transpose; bias [N·r] -> b [4·N·r], zero but for the
    β block, so that addmm adds β's bias too."""
    return weight.t().contiguous(), torch.cat([bias.new_zeros(3 * bias.shape[0]), bias])


def decode_read(z: torch.Tensor, state: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The read half of a decode step: z [B, 4·N·r] = x w_t + b (the raw projections, blocks
    q, k, v, β); state [B, N, r, r] fp32; valid [B, 1, 1] fp32 0/1 (padding reads zero) or None
    = all valid. Returns S_{t-1} q_t as [B·N, r, 1] (view it as [B, N, r]); nothing is written.

    Why the step is split: the read is needed inside the layer (it feeds the q/o corrections),
    the write only by the next token. A caller that runs many layers can therefore read per
    layer and write all layers at once afterwards (`decode_write` takes stacked layers)."""
    B, N, r = state.shape[0], state.shape[1], state.shape[2]
    t = torch.tanh(z[:, : N * r]).reshape(B, N, r)
    # F.normalize(t, dim=-1, eps=1e-6) without its Python layers: the same three kernels
    q = t / torch.linalg.vector_norm(t, dim=-1, keepdim=True).clamp_min(1e-6)
    if valid is not None:
        q = q * valid
    return torch.bmm(state.reshape(B * N, r, r), q.reshape(B * N, r, 1))


def decode_write(z: torch.Tensor, state: torch.Tensor, write: torch.Tensor | None = None) -> torch.Tensor:
    """The write half of a decode step, for any number of stacked layers: z [..., B, 4·N·r] as in
    `decode_read`; state [..., B, N, r, r] fp32, not modified; write [B, 1] fp32 0/1 (0 holds that
    sequence's state exactly: β = 0, λ = 1) or None = all written. Returns the new state, shaped
    like ``state``: S ← Diag(1 − β) S + Diag(β)(v − S k) kᵀ with k = L2norm(tanh(·)), β = sigmoid(·)."""
    N, r = state.shape[-3], state.shape[-1]
    R, M = N * r, state.numel() // (r * r)  # M = every (…, b, n) state head
    t = torch.tanh(z[..., R: 2 * R]).reshape(M, 1, r)
    k = t / torch.linalg.vector_norm(t, dim=-1, keepdim=True).clamp_min(1e-6)  # [M, 1, r]
    beta = torch.sigmoid(z[..., 3 * R:])  # [..., B, N·r], β's bias is in z
    if write is not None:
        beta = beta * write
    beta = beta.reshape(M, r, 1)
    S = state.reshape(M, r, r)
    u = beta * (z[..., 2 * R: 3 * R].reshape(M, r, 1) - torch.bmm(S, k.transpose(1, 2)))  # β (v − S k), [M, r, 1]
    return torch.addcmul(S * (1 - beta), u, k).view(state.shape)


def decode_step(x: torch.Tensor, w_t: torch.Tensor, b: torch.Tensor, state: torch.Tensor,
                write: torch.Tensor | None = None, valid: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """`fused_step` without corrections, for inference only: `decode_read` then `decode_write`.

    Why a second form: on CPU a decode token is, per layer, a few kernels on tensors of a few
    dozen numbers, so its time is per-call dispatch and Python, not arithmetic. Same math as
    `fused_step` up to the rounding of reordered sums: one addmm for the four projections and β's
    bias, one batched matmul each for S q and S k, one addcmul for the write. x [B, d] fp32;
    w_t, b from `decode_weights`; state [B, N, r, r] fp32, not modified; write [B, 1] and valid
    [B, 1, 1] fp32 0/1 masks as in `decode_write` / `decode_read`. Returns read [B, N, r] and
    the new state [B, N, r, r], fp32."""
    z = torch.addmm(b, x, w_t)  # [B, 4·N·r]
    return decode_read(z, state, valid).view(state.shape[:3]), decode_write(z, state, write)
