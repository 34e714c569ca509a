"""Inference decode on the PyTorch path (CPU): per layer only the read, the writes of all layers at once.

Why: on CPU a decode token's δ-mem work is, per layer, a dozen kernels on tensors of a few dozen
numbers, so it costs operator dispatch and Python, not arithmetic — and inside a real model each
call also finds the caches cold, because the backbone streams megabytes of weights between two
layers. Within one token no layer reads another layer's state, and every layer reads its state
from *before* the token (read before write), so the writes can wait until the forward returns:

- per layer (in the q_proj hook): z = x w_t + b, q, the read S_{t-1} q_t and the q correction
  (`reference.decode_read`), then the o correction in the o_proj hook — 8 operator calls;
- once per token (in the model's forward hook): k, v, β, S k and the update of every layer, on
  the states stacked [L, B, N, r, r] (`reference.decode_write`) — about a dozen calls in all.

The math is `reference.decode_step`'s; only the order of the writes across layers changes, which
nothing observes. A forward that raises before it returns leaves every state as it was.
"""

from __future__ import annotations

from typing import Any

import torch

from kernels.deltamem.reference import decode_write


class Plan:
    """What one single-token inference forward needs, built once by the model's pre-forward hook.

    weights: per layer slot (w_t [d, 4·N·r], b [4·N·r], {head: (α/r)·W^Δᵀ [N·r, out]});
    zs: per slot a [B, 4·N·r] view of z [L, B, 4·N·r], where each layer leaves its projections;
    valid: [B, 1, 1] fp32 q mask (None = no padding); write: [B, 1] fp32 write mask (None = all
    written); writes: False when nothing is written this call; ran: the layers that have read;
    key: (batch, device, input dtype), what every layer's state must belong to (MemoryLayer._key)."""

    __slots__ = ("key", "weights", "z", "zs", "valid", "write", "writes", "ran")

    def __init__(self, key: tuple, weights: list, z: torch.Tensor, valid: torch.Tensor | None, write: torch.Tensor | None,
                 writes: bool) -> None:
        self.key, self.weights, self.z, self.zs = key, weights, z, z.unbind(0)
        self.valid, self.write, self.writes, self.ran = valid, write, writes, []


def masks(io: Any, B: int, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None, bool]:
    """(valid [B, 1, 1] | None, write [B, 1] | None, writes) of a one-token call, as fp32 multipliers.
    writes=False: no sequence is written (set_default_write(False), or no ids)."""
    valid = io.valid[:, 0] if io.valid is not None else None  # [B] bool
    if io.writes is True:
        write, writes = valid, True  # padding is never written
    elif io.writes is False or io.ids is None:
        write, writes = None, False
    else:
        write, writes = (io.ids[:, 0] >= 0) if valid is None else (io.ids[:, 0] >= 0) & valid, True
    return (None if valid is None else valid.float().view(B, 1, 1),
            None if write is None else write.float().view(B, 1), writes)


def applies(ad: Any, x: torch.Tensor, T: int) -> bool:
    """Whether this forward takes the batched path: one token, token granularity, no recording,
    the PyTorch implementation, and no gradient to the memory parameters."""
    io = ad.io
    if T != 1 or io.record is not None or (io.granularity or ad.spec.granularity) != "token":
        return False
    if not (io.impl == "reference" or (io.impl == "auto" and x.device.type != "cuda")):
        return False
    return not (torch.is_grad_enabled() and any(p.requires_grad for p in ad.parameters()))


def weights(ad: Any) -> list:
    """Every layer's decode operands, cached on the adapter until a weight changes (in-place updates
    bump ``_version``, a replaced tensor changes ``data_ptr``) or inference mode flips."""
    layers = ad._slots
    key = (torch.is_inference_mode_enabled(), *((w.data_ptr(), w._version) for layer in layers for w in layer._sources()))
    hit = ad._decode_cache
    if hit is None or hit[0] != key:
        hit = ad._decode_cache = (key, [layer.inference_weights() for layer in layers])
    return hit[1]


def plan(ad: Any, x: torch.Tensor, B: int) -> Plan:
    valid, write, writes = masks(ad.io, B, x.device)
    R = ad.spec.rank * ad.spec.num_states
    z = torch.empty(len(ad._slots), B, 4 * R, dtype=torch.float32, device=x.device)
    return Plan((B, x.device, x.dtype), weights(ad), z, valid, write, writes)


def flush(ad: Any, p: Plan) -> None:
    """Write every layer that read in this forward, all in one step; their states become views of
    one [L, B, N, r, r] tensor, which the next token reuses as is when no state was replaced."""
    ran = p.ran
    if not ran or not p.writes:
        return
    if len(ran) == len(p.zs) and all(layer._slot == i for i, layer in enumerate(ran)):
        z = p.z
    else:  # some layer did not run (or ran twice): write those that ran, in their order
        z = torch.stack([p.zs[layer._slot] for layer in ran])
    views = ad._state_views
    if views is not None and len(views) == len(ran) and all(layer.state is v for layer, v in zip(ran, views)):
        S = ad._state_stack  # last token's result: no copy
    else:
        S = torch.stack([layer.state for layer in ran])
    S = decode_write(z, S, p.write)
    views = S.unbind(0)
    for layer, v in zip(ran, views):
        layer.state = v
    ad._state_stack, ad._state_views = S, views
