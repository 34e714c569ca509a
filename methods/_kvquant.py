"""Quantized KV cache (``method=full_kv method.kv_quantization=int8|int4``), in plain torch.

Why our own cache layer and not transformers' ``QuantizedCache``: in transformers 5.24 that cache
refuses models with sliding-window layers (Gemma 3, the default model), its int backends need
optimum-quanto (which hung on CPU here) or HQQ, and it re-quantizes the whole cache every time its
residual fills up. The layers below subclass transformers' ``DynamicLayer``, so the model, the
attention masks and ``Cache`` see an ordinary dynamic cache.

Scheme (per token, along ``head_dim``): every key and value vector ``[D]`` is cut into groups of
``group`` channels (clipped to ``D``); each group is quantized asymmetrically with min-max,
``q = round((x - zero) / scale)`` in ``0 .. 2**bits - 1``, ``x ≈ q * scale + zero``, with ``scale``
and ``zero`` stored in float16 (rounded outwards so the range still covers the group, which keeps
the error of every value at most ``scale / 2``). int8 keeps one value per byte; int4 packs two per
byte (channel ``2j`` in the low nibble, ``2j + 1`` in the high one). Quantizing per token makes the
cache append-only: old tokens are never re-quantized.

The ``residual`` most recent tokens stay in the model's dtype (as in KIVI and transformers): the
tokens the next queries look at most are exact, and they cost ``residual`` full-precision rows per
layer. Tokens leaving the residual are quantized once. ``residual=0`` quantizes everything stored.
The defaults of full_kv (groups of 32, a residual of 32) and what other choices cost and change are
in benchmarks/results/kv_quant_cpu.md: int4 on Gemma 3 loses more with larger groups, a long fp32
residual costs more bytes than the quantized tokens without a clear gain.

What is stored (and counted in state bytes) per layer: the packed data ``[B, H, Lq, D*bits/8]``
uint8, ``scale`` and ``zero`` ``[B, H, Lq, D/group]`` float16, and the residual ``[B, H, Lr, D]``.
Each forward dequantizes the stored tokens into a temporary ``[B, H, Lq, D]`` tensor in the model's
dtype; that copy is working memory, dropped after the layer's attention.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

KV_QUANTIZATIONS = {"none": None, "int8": 8, "int4": 4}
PARAM_DTYPE = torch.float16  # scale and zero point
PARTS = ("data", "scale", "zero")
def group_for(head_dim: int, group: int) -> int:
    """The group size used for vectors of ``head_dim`` channels (``group`` clipped to ``head_dim``)."""
    g = min(group, head_dim)
    if head_dim % g:
        raise ValueError(f"invalid value for 'method.kv_group_size': {group}; head_dim {head_dim} is not a multiple of {g}")
    return g


def quantize(x: torch.Tensor, bits: int, group: int) -> dict[str, torch.Tensor]:
    """``x`` [..., D] -> {"data": uint8 [..., D*bits/8], "scale", "zero": float16 [..., D/group]}."""
    levels = 2**bits - 1
    *lead, d = x.shape
    g = group_for(d, group)
    xf = x.float().reshape(*lead, d // g, g)  # [..., D/g, g]
    lo, hi = xf.amin(-1), xf.amax(-1)  # [..., D/g]
    big = torch.finfo(PARAM_DTYPE).max
    if lo.numel() and (lo.abs().max() > big or (hi - lo).max() > big):
        raise ValueError("method.kv_quantization: a key/value group exceeds the float16 range of the scale/zero point")
    down, up = torch.tensor(float("-inf"), dtype=PARAM_DTYPE), torch.tensor(float("inf"), dtype=PARAM_DTYPE)
    zero = lo.to(PARAM_DTYPE)
    zero = torch.where(zero.float() > lo, torch.nextafter(zero, down.to(zero.device)), zero)  # round down: covers lo
    scale = ((hi - zero.float()) / levels).to(PARAM_DTYPE)
    scale = torch.where(zero.float() + scale.float() * levels < hi, torch.nextafter(scale, up.to(scale.device)), scale)  # covers hi
    s = scale.float().unsqueeze(-1)
    q = torch.round((xf - zero.float().unsqueeze(-1)) / torch.where(s > 0, s, torch.ones_like(s))).clamp_(0, levels)
    q = q.to(torch.uint8).reshape(*lead, d)
    if bits == 4:
        q = q[..., 0::2] | (q[..., 1::2] << 4)  # [..., D/2]: two channels a byte
    return {"data": q, "scale": scale, "zero": zero}


def dequantize(parts: dict[str, torch.Tensor], bits: int, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of ``quantize``: [..., D] in ``dtype`` (a new, temporary tensor)."""
    q = parts["data"]
    if bits == 4:
        q = torch.stack((q & 0xF, q >> 4), dim=-1).flatten(-2)  # [..., D]
    *lead, d = q.shape
    n = parts["scale"].shape[-1]
    x = q.float().reshape(*lead, n, d // n) * parts["scale"].float().unsqueeze(-1) + parts["zero"].float().unsqueeze(-1)
    return x.reshape(*lead, d).to(dtype)


def _cat(a: dict[str, torch.Tensor] | None, b: dict[str, torch.Tensor] | None, start: int) -> dict[str, torch.Tensor] | None:
    """Tokens ``start:`` of ``a`` then ``b`` (seq dim -2), as fresh tensors that own exactly their bytes."""
    if a is not None and start >= a["data"].shape[-2]:
        a = None
    if a is None and b is None:
        return None
    if b is None:
        return a if start == 0 else {k: a[k][..., start:, :].clone() for k in PARTS}
    if a is None:
        return b
    return {k: torch.cat([a[k][..., start:, :], b[k]], dim=-2) for k in PARTS}


class QuantKVLayer(DynamicLayer):
    """A full-attention cache layer holding quantized tokens plus a full-precision residual.

    ``keys`` / ``values`` are the residual ([B, H, Lr, D], the model's dtype); ``qk`` / ``qv`` the
    quantized tokens before it (dicts of ``PARTS``). ``limit`` bounds the tokens held (sliding
    layers); ``cumulative_length`` counts every token seen.
    """

    is_croppable = False

    def __init__(self, bits: int, group: int, residual: int, limit: int | None = None) -> None:
        super().__init__()
        self.bits, self.group, self.residual, self.limit = bits, group, residual, limit
        self.qk: dict[str, torch.Tensor] | None = None
        self.qv: dict[str, torch.Tensor] | None = None
        self.cumulative_length = 0

    def quantized_tokens(self) -> int:
        return 0 if self.qk is None else self.qk["data"].shape[-2]

    def held(self) -> int:
        """Tokens stored (quantized + residual)."""
        r = 0 if self.keys is None or self.keys.dim() != 4 else self.keys.shape[-2]
        return self.quantized_tokens() + r

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new [B, H, n, D] states; return the held ones (dequantized) followed by them."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        dtype = key_states.dtype
        past_k = [self.keys] if self.qk is None else [dequantize(self.qk, self.bits, dtype), self.keys]
        past_v = [self.values] if self.qv is None else [dequantize(self.qv, self.bits, dtype), self.values]
        full_k, full_v = torch.cat([*past_k, key_states], dim=-2), torch.cat([*past_v, value_states], dim=-2)
        self.cumulative_length += key_states.shape[-2]
        self._store(key_states, value_states)
        return full_k, full_v

    def _store(self, k: torch.Tensor, v: torch.Tensor) -> None:
        # Conceptually held = [quantized (lq) | residual (lr) | new (n)]; keep the last `keep`, the
        # last `r` of those in full precision, quantize what moves out of the residual.
        lq, lr, n = self.quantized_tokens(), self.keys.shape[-2] if self.keys.dim() == 4 else 0, k.shape[-2]
        total = lq + lr + n
        keep = total if self.limit is None else min(total, self.limit)
        start, r = total - keep, min(self.residual, keep)
        tail_k = torch.cat([self.keys, k], dim=-2) if lr else k  # [B, H, lr + n, D]
        tail_v = torch.cat([self.values, v], dim=-2) if lr else v
        a, b = max(start, lq) - lq, total - r - lq  # tokens of the tail that become quantized
        new_k = quantize(tail_k[..., a:b, :], self.bits, self.group) if b > a else None
        new_v = quantize(tail_v[..., a:b, :], self.bits, self.group) if b > a else None
        self.qk, self.qv = _cat(self.qk, new_k, start), _cat(self.qv, new_v, start)
        self.keys = tail_k[..., tail_k.shape[-2] - r :, :].clone()  # [B, H, r, D], owns its bytes
        self.values = tail_v[..., tail_v.shape[-2] - r :, :].clone()

    def get_seq_length(self) -> int:
        return self.cumulative_length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.cumulative_length + query_length, 0

    def reset(self) -> None:
        self.qk = self.qv = None
        super().reset()

    def _unsupported(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("a quantized KV cache layer supports neither cropping nor beam/batch reordering")

    crop = reorder_cache = batch_repeat_interleave = batch_select_indices = _unsupported

    def stored(self) -> dict[str, torch.Tensor]:
        """Every tensor this layer holds, by name (what state bytes count and what is persisted)."""
        out: dict[str, torch.Tensor] = {}
        if self.keys is not None and self.keys.dim() == 4 and self.keys.shape[-2]:
            out["keys"], out["values"] = self.keys, self.values
        for side, parts in (("k", self.qk), ("v", self.qv)):
            for name, t in (parts or {}).items():
                out[f"q{side}_{name}"] = t
        return out

    def restore(self, tensors: dict[str, torch.Tensor], dtype: torch.dtype, device: torch.device) -> None:
        """Put back what ``stored`` returned (after ``reset``); ``dtype`` of an empty residual."""
        empty = torch.empty(0, dtype=dtype, device=device)
        k, v = tensors.get("keys", empty).to(device), tensors.get("values", empty).to(device)
        self.lazy_initialization(k, v)
        self.keys, self.values = k, v
        for side in ("k", "v"):
            parts = {p: tensors[f"q{side}_{p}"].to(device) for p in PARTS} if f"q{side}_data" in tensors else None
            setattr(self, f"q{side}", parts)


class QuantSlidingKVLayer(QuantKVLayer):
    """The sliding-window counterpart: holds at most ``sliding_window - 1`` tokens, like
    transformers' ``DynamicSlidingWindowLayer`` (same mask sizes)."""

    is_sliding = True

    def __init__(self, bits: int, group: int, residual: int, sliding_window: int) -> None:
        super().__init__(bits, group, residual, limit=sliding_window - 1)
        self.sliding_window = sliding_window

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        full = self.cumulative_length >= self.sliding_window
        offset = max(self.cumulative_length - self.sliding_window + 1, 0)
        return (self.sliding_window - 1 + query_length if full else self.cumulative_length + query_length), offset

    def get_max_length(self) -> int:
        return self.sliding_window


def quantized_cache(config: Any, bits: int, group: int, residual: int) -> Any:
    """A ``DynamicCache`` for ``config`` whose layers are quantized (sliding ones stay sliding)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    layers = []
    for i, layer in enumerate(cache.layers):
        if isinstance(layer, DynamicSlidingWindowLayer):
            layers.append(QuantSlidingKVLayer(bits, group, residual, layer.sliding_window))
        elif type(layer) is DynamicLayer:
            layers.append(QuantKVLayer(bits, group, residual))
        else:
            raise ValueError(f"method.kv_quantization: cache layer {i} is a {type(layer).__name__}, which cannot be quantized")
    if not layers:
        raise ValueError("method.kv_quantization: the model config declares no cache layers")
    cache.layers = layers
    return cache
