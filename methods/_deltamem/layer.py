"""One δ-mem memory: the per-layer projections, gates, low-rank corrections and the fp32 state.

The state is ``S ∈ R^{N×r×r}`` per sequence (N = 1 for TSW/SSW, N states for MSW); rows are value
dimensions. Every call first reads ``r_t = S_{t-1} q_t`` and then writes (docs/deltamem.md §2):

    S_t = Diag(1-β_t) S_{t-1} + Diag(β_t) (v_t - S_{t-1} k_t) k_tᵀ

The scan itself lives in ``kernels.deltamem`` (``scan`` for chunks, ``step`` for one token); this
module only projects, masks and keeps the state. Parameters stay fp32 whatever the backbone dtype:
they are tiny, and the inputs to a tanh/L2 norm and a long recurrence should not be rounded twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kernels.deltamem.reference import decode_read as _decode_read

GRANULARITIES = ("token", "message")
HEADS = ("q", "k", "v", "o")


@dataclass
class Spec:
    """Shape and behaviour of an attached δ-mem (one per model; saved with every adapter)."""

    rank: int = 8
    alpha: float = 16.0
    num_states: int = 1  # N; MSW when > 1
    granularity: str = "token"  # token (TSW/MSW) | message (SSW: one write per message per call)
    heads: tuple[str, ...] = ("q", "o")  # which projections get a correction ("qo" in the paper)
    layers: tuple[int, ...] | None = None  # None = every attention layer
    beta_bias_init: float = -1.5
    base_slice_gain: float = 0.05

    def __post_init__(self) -> None:
        from harness.registry import check

        self.heads = tuple(self.heads)
        self.layers = None if self.layers is None or len(self.layers) == 0 else tuple(int(i) for i in self.layers)
        check(isinstance(self.rank, int) and self.rank > 0, "rank", "a positive integer", self.rank)
        check(isinstance(self.num_states, int) and self.num_states > 0, "num_states", "a positive integer", self.num_states)
        check(self.granularity in GRANULARITIES, "granularity", f"one of {', '.join(GRANULARITIES)}", self.granularity)
        check(set(self.heads) <= set(HEADS) and len(self.heads) > 0, "heads", f"a non-empty subset of {HEADS}", self.heads)
        check(float(self.alpha) > 0, "alpha", "a positive number", self.alpha)


@dataclass
class Io:
    """What the attach-level hooks hand every layer for one forward call."""

    valid: torch.Tensor | None = None  # [B, T] bool, False = padding (no read, no write); None = all real
    ids: torch.Tensor | None = None  # [B, T] long write ids: -1 = not written; SSW groups equal ids ≥ 0
    granularity: str | None = None  # overrides Spec.granularity for this call (reported SSW->TSW fallback)
    record: Recording | None = None  # set by Adapter.record(): per-token β and reads are kept (training, probes)
    impl: str = "auto"  # kernels.deltamem implementation: auto | reference | triton
    # what the host knows about this call's writes without reading device memory: True = every real
    # token is written, False = none is, None = only the ids tensor tells (masked per token)
    writes: bool | None = None
    step_masks: tuple | None = None  # (write [B], valid [B] | None) of a 1-token call, built once for all layers
    decode_masks: tuple | None = None  # decode.masks(): (valid [B, 1, 1] | None, write [B, 1] | None, writes), ditto
    plan: Any = None  # decode.Plan of a 1-token inference forward on the PyTorch path: layers read, the adapter writes


@dataclass
class Recording:
    """What the layers report while ``Adapter.record()`` is active, one entry per forward call and layer.

    ``beta[layer]``: list of [B, T] — β per token, averaged over the N·r rows (0 where not written);
    ``written[layer]``: list of [B, T] bool; ``reads[layer]``: list of [B, T, N·r] reads r_t = S_{t-1} q_t.
    Tensors keep their autograd graph, so a loss on them trains the memory projections."""

    beta: dict[int, list] = field(default_factory=dict)
    written: dict[int, list] = field(default_factory=dict)
    reads: dict[int, list] = field(default_factory=dict)

    def add(self, layer: int, beta: torch.Tensor | None, written: torch.Tensor | None, reads: torch.Tensor) -> None:
        if beta is not None:
            self.beta.setdefault(layer, []).append(beta)
            self.written.setdefault(layer, []).append(written)
        self.reads.setdefault(layer, []).append(reads)

    def mean_beta(self) -> torch.Tensor:
        """[layers]: mean β over every written token (and row) of the recorded calls, per layer."""
        out = []
        for i in sorted(self.beta):
            b, w = torch.cat([x.flatten() for x in self.beta[i]]), torch.cat([x.flatten() for x in self.written[i]])
            out.append((b * w).sum() / w.sum().clamp_min(1))
        return torch.stack(out) if out else torch.zeros(0)

    def token_beta(self, call: int = 0) -> torch.Tensor:
        """[B, T]: β per token of forward call ``call``, averaged over layers."""
        return torch.stack([self.beta[i][call] for i in sorted(self.beta)]).mean(0)

    def concat_reads(self, call: int = -1) -> torch.Tensor:
        """[B, T, layers·N·r]: the reads of every layer for forward call ``call``, concatenated."""
        return torch.cat([self.reads[i][call] for i in sorted(self.reads)], -1)


class MemoryLayer(nn.Module):
    """Parameters and state of δ-mem for one attention layer. Names match the official adapter."""

    def __init__(self, spec: Spec, d: int, q_out: int, kv_out: int, layer_idx: int) -> None:
        super().__init__()
        R = spec.rank * spec.num_states
        self.spec, self.layer_idx, self.width = spec, layer_idx, R
        self.scale = float(spec.alpha) / spec.rank
        self.memory_q_proj = nn.Linear(d, R, bias=False)
        self.memory_k_proj = nn.Linear(d, R, bias=False)
        self.memory_v_proj = nn.Linear(d, R, bias=False)
        self.beta_proj = nn.Linear(d, R, bias=False)
        self.beta_bias = nn.Parameter(torch.full((R,), float(spec.beta_bias_init)))
        outs = {"q": q_out, "k": kv_out, "v": kv_out, "o": d}
        self.delta = nn.ModuleDict({h: nn.Linear(R, outs[h], bias=False) for h in spec.heads})
        nn.init.zeros_(self.beta_proj.weight)
        for lin in self.delta.values():
            nn.init.zeros_(lin.weight)
        self.state: torch.Tensor | None = None  # [B, N, r, r] fp32
        self._key: tuple | None = None  # (batch, device, input dtype) the state belongs to
        self._reads: torch.Tensor | None = None  # [B, T, R] between the q and the o hook
        self._cache: dict[str, tuple] = {}  # derived weights: name -> (key of their sources, value)
        self._corr: dict[str, torch.Tensor] | None = None  # head -> [B, 1, out] corrections of a decode step
        self._dts: dict[str, torch.Tensor] | None = None  # head -> (α/r)·W^Δᵀ [N·r, out] while an inference forward runs
        self._slot = 0  # this layer's index among the adapter's layers (decode.Plan's per-layer entries)

    # Plain attributes rewritten on every forward; nn.Module.__setattr__ (parameter/buffer/module
    # bookkeeping, ~1.5 µs) is skipped for them, which is measurable at 18 layers × 4 per token.
    _PLAIN = frozenset({"state", "_key", "_reads", "_corr", "_dts"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in MemoryLayer._PLAIN:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @torch.no_grad()
    def init_from_base(self, base: dict[str, torch.Tensor]) -> None:
        """W_q^Δ / W_o^Δ: first r columns = gain × the base q_proj / o_proj first r columns, L2-normalised per column."""
        r = self.spec.rank
        for h, w in base.items():
            if h in self.delta:
                cols = F.normalize(w[:, :r].float(), dim=0) * self.spec.base_slice_gain  # [out, r]
                self.delta[h].weight.zero_()
                self.delta[h].weight[:, :r] = cols.to(self.delta[h].weight.device)

    # -- state --------------------------------------------------------------------------------
    def reset(self) -> None:
        self.state, self._key, self._reads, self._corr, self._dts = None, None, None, None, None

    def _state_for(self, x: torch.Tensor) -> torch.Tensor:
        B, key = x.shape[0], (x.shape[0], x.device, x.dtype)
        if self.state is None:
            N, r = self.spec.num_states, self.spec.rank
            self.state, self._key = torch.zeros(B, N, r, r, dtype=torch.float32, device=x.device), key
        elif key != self._key:
            raise RuntimeError(
                f"δ-mem state of layer {self.layer_idx} belongs to (batch, device, dtype) = {self._key}, but this forward has "
                f"{key}; call reset_state(model) before changing batch size, device or dtype"
            )
        return self.state

    # -- compute ------------------------------------------------------------------------------
    def project(self, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """h: [B, T, d] fp32 -> q, k, v, β each [B, T, N, r]; tanh + L2 per state on q and k."""
        from kernels.deltamem.reference import gates

        # one matmul for the four projections, then the gate math the decode step uses too
        return gates(F.linear(h, self.stacked_weight()), self.beta_bias, self.spec.num_states, self.spec.rank)

    def _derived(self, name: str, sources: list[torch.Tensor], build) -> Any:
        """``build()`` cached until a source weight changes (in-place updates bump ``_version``) or
        inference mode flips (inference tensors must not leak into autograd)."""
        key = (torch.is_inference_mode_enabled(), *((w.data_ptr(), w._version) for w in sources))
        hit = self._cache.get(name)
        if hit is None or hit[0] != key:
            hit = self._cache[name] = (key, build())
        return hit[1]

    def stacked_weight(self) -> torch.Tensor:
        """[4·N·r, d]: W_q, W_k, W_v, W_β stacked, as ``kernels.deltamem.fused_step`` takes them.
        Built differentiably when gradients are on, cached otherwise."""
        ws = [self.memory_q_proj.weight, self.memory_k_proj.weight, self.memory_v_proj.weight, self.beta_proj.weight]
        if torch.is_grad_enabled() and any(w.requires_grad for w in ws):
            return torch.cat(ws)
        return self._derived("stacked", ws, lambda: torch.cat(ws).detach())

    def correction_weight(self) -> tuple[torch.Tensor, dict[str, slice]]:
        """(α/r)·W^Δ of every corrected head stacked [Σ outs, N·r], and each head's rows (inference only)."""
        ws = [lin.weight for lin in self.delta.values()]

        def build() -> tuple[torch.Tensor, dict[str, slice]]:
            rows, start = {}, 0
            for h, w in zip(self.delta, ws):
                rows[h], start = slice(start, start + w.shape[0]), start + w.shape[0]
            return (self.scale * torch.cat(ws)).detach(), rows

        return self._derived("delta", ws, build)

    def _sources(self) -> list[torch.Tensor]:
        """Every parameter, read from the module dicts (each ``Module.__getattr__`` costs ~1 µs per token)."""
        m = self._modules
        return [m["memory_q_proj"]._parameters["weight"], m["memory_k_proj"]._parameters["weight"],
                m["memory_v_proj"]._parameters["weight"], m["beta_proj"]._parameters["weight"], self._parameters["beta_bias"],
                *(lin._parameters["weight"] for lin in m["delta"]._modules.values())]

    def inference_weights(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(w_t, b) of ``kernels.deltamem.reference.decode_step`` and {head: (α/r)·W^Δᵀ [N·r, out]}
        for the corrections' addmm (inference only: cached until a weight changes)."""
        from kernels.deltamem.reference import decode_weights

        def build() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
            dw, rows = self.correction_weight()
            w_t, b = decode_weights(self.stacked_weight(), self.beta_bias.detach())
            return w_t, b, {h: dw[sl].t().contiguous() for h, sl in rows.items()}

        return self._derived("inference", self._sources(), build)

    def decode(self, x: torch.Tensor, out: torch.Tensor, plan: Any) -> torch.Tensor:
        """The q_proj hook of a one-token inference forward on the PyTorch path (``decode.Plan``):
        x [B, 1, d] the attention input, out [B, 1, q_out] q_proj's output. Reads the state and
        leaves the projections in the plan; the adapter writes every layer after the forward.
        Returns out with the q correction (out itself when q is not corrected)."""
        # every call costs here (18 layers per token, each with cold caches): no imports, no checks
        # beyond the state's key, the corrections inline
        S = self.state if self._key == plan.key else self._state_for(x)
        B, slot = plan.key[0], self._slot
        w_t, b, dts = plan.weights[slot]
        h = x.reshape(B, -1) if x.dtype == torch.float32 else x.reshape(B, -1).float()
        reads = _decode_read(torch.addmm(b, h, w_t, out=plan.zs[slot]), S, plan.valid).view(B, 1, self.width)
        self._reads, self._corr, self._dts = reads, None, dts
        plan.ran.append(self)
        dq = dts.get("q")
        if dq is None:
            return out
        if out.dtype == torch.float32:
            return torch.addmm(out.reshape(B, -1), reads.view(B, -1), dq).view(out.shape)
        return out + (reads @ dq).to(out.dtype)

    def read_write(self, x: torch.Tensor, io: Io) -> torch.Tensor:
        """x: [B, T, d] (the attention input). Returns reads [B, T, N*r] fp32 and advances the state."""
        from kernels import deltamem as K

        S = self._state_for(x)
        B, T, _ = x.shape
        token = (io.granularity or self.spec.granularity) == "token"
        if T == 1 and token and io.record is None and (io.impl == "reference" or (io.impl == "auto" and not S.is_cuda)) \
                and not (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())):
            # inference decode on the PyTorch path (CPU): the same step in fewer operator calls, with
            # operands prepared once per weight change and masks once per forward; the corrections
            # are one addmm per head in `correction`
            from methods._deltamem.decode import masks

            w_t, b, self._dts = self.inference_weights()
            self._corr = None
            if io.decode_masks is None:
                io.decode_masks = masks(io, B, x.device)
            valid, write, writes = io.decode_masks
            z = torch.addmm(b, x.reshape(B, -1).float(), w_t)  # [B, 4·N·r]
            reads = K.reference.decode_read(z, S, valid)
            if writes:
                self.state = K.reference.decode_write(z, S, write)
            return reads.reshape(B, 1, self.width)
        if T == 1 and token and io.record is None:
            # decode: projection, gates, read and write in one fused step (one kernel launch on GPU),
            # with no host synchronisation
            if io.step_masks is None:
                valid = io.valid[:, 0] if io.valid is not None else None
                write = (io.ids[:, 0] >= 0) if io.ids is not None else torch.zeros(B, dtype=torch.bool, device=x.device)
                io.step_masks = (write if valid is None else write & valid, valid)  # padding is never written
            write, valid = io.step_masks
            # at inference the q/o corrections come out of the same step (the kernel's epilogue on GPU)
            training = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
            dw, rows = (None, {}) if training else self.correction_weight()
            reads, self.state, *corr = K.fused_step(x[:, 0], self.stacked_weight(), self.beta_bias, S, write, valid,
                                                    impl=io.impl, delta_weight=dw)
            self._corr = {h: corr[0][:, None, sl] for h, sl in rows.items()} if corr else None
            self._dts = None
            return reads.reshape(B, 1, self.width)
        h = x.float()
        q, k, v, beta = self.project(h)
        # the corrections' weights at inference, fetched once per forward (None: differentiable path)
        training = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        self._corr, self._dts = None, None if training else self.inference_weights()[2]
        if io.valid is not None:
            q = q * io.valid[..., None, None]  # padding reads zero
        # host-side knowledge of the writes (Io.writes) replaces a device read per layer: no sync
        writes = io.writes if io.writes is not None else (None if io.ids is not None else False)
        if token:
            if writes is True:  # every real token is written: only padding is masked
                w = (io.valid if io.valid is not None else torch.ones(B, T, dtype=torch.bool, device=x.device))[..., None, None]
            elif writes is False:
                w = torch.zeros(B, T, 1, 1, dtype=torch.bool, device=x.device)
            else:
                w = (io.ids >= 0 if io.valid is None else (io.ids >= 0) & io.valid)[..., None, None]  # [B, T, 1, 1]
            beta = beta * w  # β = 0: λ = 1 and no write, the state is held exactly
            if writes is False:
                reads = torch.einsum("bnij,btnj->btni", S, q)  # nothing written: the state is only read
            elif T == 1:
                r1, S = K.step(q[:, 0], k[:, 0] * w[:, 0], v[:, 0] * w[:, 0], beta[:, 0], S, impl=io.impl)
                reads = r1[:, None]
            else:
                reads, S = K.scan(q, k * w, v * w, beta, S, impl=io.impl)
        else:
            reads = torch.einsum("bnij,btnj->btni", S, q)  # every token reads the state from before the call
            valid = io.valid if io.valid is not None else torch.ones(B, T, dtype=torch.bool, device=x.device)
            ids = io.ids if io.ids is not None and writes is not False else torch.full((B, T), -1, dtype=torch.long, device=x.device)
            S = self._message_writes(h, ids.masked_fill(~valid, -1), S, io)
            beta, w = None, None
        self.state = S
        reads = reads.float().reshape(B, T, self.width)
        if io.record is not None:
            io.record.add(self.layer_idx, None if beta is None else beta.mean((-1, -2)), None if w is None else w[..., 0, 0], reads)
        return reads

    def _message_writes(self, h: torch.Tensor, ids: torch.Tensor, S: torch.Tensor, io: Io) -> torch.Tensor:
        """SSW: one write per message id present in this call, from the mean hidden state, in id order."""
        from kernels import deltamem as K

        B = h.shape[0]
        uniq = [torch.unique(ids[b][ids[b] >= 0]) for b in range(B)]  # sorted ids per sequence
        M = max((len(u) for u in uniq), default=0)
        if M == 0:
            return S
        onehot = torch.zeros(B, M, h.shape[1], dtype=h.dtype, device=h.device)  # [B, M, T]
        live = torch.zeros(B, M, dtype=torch.bool, device=h.device)
        for b, u in enumerate(uniq):
            onehot[b, : len(u)] = (ids[b][None, :] == u[:, None]).to(h.dtype)
            live[b, : len(u)] = True
        hm = (onehot @ h) / onehot.sum(-1, keepdim=True).clamp_min(1)  # [B, M, d]
        q, k, v, beta = self.project(hm)
        beta = beta * live[..., None, None]
        if M == 1:
            return K.step(q[:, 0], k[:, 0], v[:, 0], beta[:, 0], S, impl=io.impl)[1]
        return K.scan(q, k, v, beta, S, impl=io.impl)[1]

    def correction(self, head: str, out: torch.Tensor) -> torch.Tensor:
        """out + (α/r) W^Δ_head r_t, for the projection ``head`` whose output is ``out``."""
        reads = self._reads
        if reads is None:
            raise RuntimeError(f"δ-mem layer {self.layer_idx}: {head}_proj ran before q_proj; this attention class is not supported")
        if self._corr is not None:  # computed with the decode step
            return out + self._corr[head]
        if self._dts is not None:  # inference: the cached (α/r)·W^Δᵀ; fp32 outputs take it in one addmm
            if out.dtype == torch.float32:
                return torch.addmm(out.reshape(-1, out.shape[-1]), reads.reshape(-1, reads.shape[-1]), self._dts[head]).view(out.shape)
            return out + (reads @ self._dts[head]).to(out.dtype)
        return out + (self.scale * self.delta[head](reads)).to(out.dtype)
