"""Run NVIDIA kvpress presses (0.5.x, written for transformers < 5.3) on transformers 5.24.

What breaks, and what this module does about it (nothing here touches kvpress's files, and nothing
stays changed after a ``with`` block ends):

1. **Renamed forward kwargs.** kvpress's ``BasePress.forward_hook`` reads ``kwargs["past_key_values"]``
   and ``kwargs["cache_position"]``; 5.24 passes the cache to attention modules as ``cache`` and no
   longer passes ``cache_position`` at all. ``press_hooks`` registers its own forward hook that
   rebuilds those two entries (``cache_position`` from ``position_ids[0]``, the absolute positions
   of this forward) and then calls the press's own ``forward_hook`` unchanged.
2. **Import-time global patch.** ``import kvpress`` wraps every entry of transformers'
   ``ALL_ATTENTION_FUNCTIONS`` (for head-wise presses such as AdaKV, which mask keys instead of
   dropping them). ``import_kvpress`` imports the package and immediately undoes that patch, so no
   other method ever runs through it. ``head_masking`` applies a mask-based equivalent
   (``masked_attention``) to the one attention implementation in use, only inside a ``with`` block.
3. **``module.rotary_emb``.** Presses that need RoPE outside the forward (expected attention,
   key re-rotation) call ``module.rotary_emb(x, position_ids)``; kvpress assigns the model's rotary
   module onto every attention module and never removes it (it then shows up in ``state_dict``).
   Gemma 3's rotary module also needs a ``layer_type`` argument. ``press_hooks`` sets a plain
   (non-Module) per-layer shim for the duration of the block and deletes it afterwards.
4. **Sliding-window layers** (Gemma 3) keep only their window and track their own offsets; kvpress
   skips them for Gemma 3 too. ``press_hooks`` hooks only full-attention layers.
5. **Positions after compression.** kvpress's pipeline passes explicit ``position_ids`` while
   decoding because a compressed ``DynamicLayer`` reports its *kept* length as the sequence length.
   ``PressedLayer`` instead counts every position it was given (``seen``), so the model derives
   positions and masks itself, exactly as for the window method.

A press is only ever applied to one prefill forward (kvpress compresses when the forward starts at
position 0), so callers prefill the whole context in one call.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from transformers.cache_utils import DynamicLayer

_WRAPPER = "attention_patch.<locals>.wrapper"


def _is_kvpress_wrapper(fn: Any) -> bool:
    return getattr(fn, "__qualname__", "") == _WRAPPER and getattr(fn, "__module__", "") == "kvpress.attention_patch"


def _unwrap(fn: Any) -> Any:
    while _is_kvpress_wrapper(fn):
        fn = fn.__closure__[fn.__code__.co_freevars.index("func")].cell_contents
    return fn


def undo_global_attention_patch() -> int:
    """Restore transformers' attention functions that ``import kvpress`` wrapped; returns how many."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS as funcs

    local, n = funcs._local_mapping, 0
    for name in list(local):
        if _is_kvpress_wrapper(local[name]):
            original, n = _unwrap(local[name]), n + 1
            if funcs._global_mapping.get(name) is original:
                del local[name]
            else:
                local[name] = original
    return n


def import_kvpress() -> Any:
    """Import kvpress (its presses) with its import-time attention patch undone."""
    try:
        import kvpress  # noqa: F401
    except ImportError as e:
        from harness.registry import ConfigError

        raise ConfigError(
            "method=kvpress needs the package 'kvpress' installed without its pins "
            f"(pip install --no-deps kvpress==0.5.5 'cachetools>=5.5.2,<6' 'fire>=0.6,<0.7' datasets): {e}"
        ) from e
    undo_global_attention_patch()
    return sys.modules["kvpress"]


class PressedLayer(DynamicLayer):
    """A full-attention cache layer whose kept keys/values may be fewer than the positions seen.

    Kept entries are treated as a contiguous block ending at the current position, which is exact
    for causality: every kept token precedes every new one.
    """

    is_sliding = False

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        keys, values = super().update(key_states, value_states, *args, **kwargs)  # [B, H, L, D]
        self.seen += key_states.shape[-2]
        return keys, values

    def held(self) -> int:
        return 0 if self.keys is None or self.keys.numel() == 0 else self.keys.shape[-2]

    def get_seq_length(self) -> int:
        return self.seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        held = self.held()
        return held + query_length, self.seen - held


def pressed_cache(model: Any) -> Any:
    """A DynamicCache whose full-attention layers are ``PressedLayer`` (sliding layers untouched)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    for i, layer in enumerate(cache.layers):
        if not getattr(layer, "is_sliding", False):
            cache.layers[i] = PressedLayer()
    return cache


class _LayerRotary:
    """``module.rotary_emb`` as kvpress expects it: ``(x, position_ids) -> (cos, sin)`` + ``inv_freq``."""

    def __init__(self, rotary: Any, layer_type: str | None) -> None:
        self.rotary, self.layer_type = rotary, layer_type
        self.needs_type = hasattr(rotary, f"{layer_type}_inv_freq") if layer_type else False

    def __call__(self, x: torch.Tensor, position_ids: torch.Tensor):
        return self.rotary(x, position_ids, self.layer_type) if self.needs_type else self.rotary(x, position_ids)

    @property
    def inv_freq(self) -> torch.Tensor:
        return getattr(self.rotary, f"{self.layer_type}_inv_freq") if self.needs_type else self.rotary.inv_freq


def decoder(model: Any) -> Any:
    """The decoder stack (``.layers``, ``.rotary_emb``) of a causal LM."""
    inner = model.model
    return inner.language_model if hasattr(inner, "language_model") else inner


def full_attention_layers(model: Any) -> list[int]:
    types = getattr(model.config, "layer_types", None)
    dec = decoder(model)
    return [i for i, layer in enumerate(dec.layers) if not getattr(layer.self_attn, "is_sliding", False) and (types is None or types[i] != "sliding_attention")]


@contextmanager
def press_hooks(press: Any, model: Any, on_layer: Any = None) -> Iterator[list[int]]:
    """Apply ``press`` to every full-attention layer for the forwards run inside the block.

    ``on_layer(cache)`` is called before each layer is compressed (for peak-memory tracking).
    Yields the indices of the hooked layers.
    """
    dec = decoder(model)
    types = getattr(model.config, "layer_types", None)
    press.post_init_from_model(model)
    hooks, shimmed = [], []

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        kw = dict(kwargs)
        if "hidden_states" not in kw and args:
            kw["hidden_states"] = args[0]
        cache = kw.get("past_key_values", kw.get("cache"))
        if cache is None:
            return output  # nothing to compress
        kw["past_key_values"] = cache
        if kw.get("cache_position") is None:
            q_len = kw["hidden_states"].shape[1]
            pos = kw.get("position_ids")
            if pos is not None:
                kw["cache_position"] = pos[0]
            else:  # positions of this forward: the last q_len of what the layer has seen
                seen = cache.layers[module.layer_idx].get_seq_length()
                kw["cache_position"] = torch.arange(seen - q_len, seen, device=kw["hidden_states"].device)
        if on_layer is not None:
            on_layer(cache)
        return press.forward_hook(module, args, kw, output)

    layers = full_attention_layers(model)
    try:
        for i in layers:
            attn = dec.layers[i].self_attn
            if "rotary_emb" not in attn.__dict__ and "rotary_emb" not in attn._modules:
                attn.rotary_emb = _LayerRotary(dec.rotary_emb, types[i] if types else None)
                shimmed.append(attn)
            hooks.append(attn.register_forward_hook(hook, with_kwargs=True))
        yield layers
    finally:
        for h in hooks:
            h.remove()
        for attn in shimmed:
            del attn.rotary_emb


def masked_attention(func: Any) -> Any:
    """Wrap an attention function so keys listed in ``module.masked_key_indices`` get no weight.

    Head-wise presses (AdaKV) keep every key and record ``(batch, kv_head, position)`` indices of
    the ones they dropped. kvpress's own wrapper overwrites those keys with a fake key found by an
    iterative hyperplane search, which fails when a forward has many queries (e.g. the question
    prefill on some models: "Could not find fake keys"). Here the same entries are removed with the
    attention mask instead, which is exact for any number of queries.
    """

    def wrapper(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any, *args: Any, **kwargs: Any):
        idx = getattr(module, "masked_key_indices", None)
        if query.shape[2] == key.shape[2]:
            module.masked_key_indices = None  # a new prefill starts from scratch (kvpress does the same)
        elif idx is not None:
            bsz, heads, q_len, _ = query.shape
            keep = torch.ones(key.shape[:3], dtype=torch.bool, device=key.device)  # [B, H_kv, K]
            keep[idx] = False
            keep = keep.repeat_interleave(heads // key.shape[1], dim=1)[:, :, None, :]  # [B, H, 1, K], repeat_kv layout
            if attention_mask is None:
                causal = torch.ones(q_len, key.shape[2], dtype=torch.bool, device=key.device).tril(key.shape[2] - q_len)  # [q, K]
                attention_mask = keep & causal
            elif attention_mask.dtype == torch.bool:
                attention_mask = attention_mask[..., : key.shape[2]] & keep
            else:
                attention_mask = attention_mask[..., : key.shape[2]].masked_fill(~keep, torch.finfo(attention_mask.dtype).min)
        return func(module, query, key, value, attention_mask, *args, **kwargs)

    wrapper.memharness_masked = True  # type: ignore[attr-defined]
    return wrapper


@contextmanager
def head_masking(model: Any) -> Iterator[None]:
    """``masked_attention`` on this model's attention implementation, only inside the block."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS as funcs

    impl = model.config._attn_implementation
    if impl not in ("sdpa", "eager"):
        from harness.registry import ConfigError

        raise ConfigError(f"invalid value for 'model.attn_implementation': {impl!r}; head-wise presses (adakv) need sdpa or eager")
    local = funcs._local_mapping
    had, old = impl in local, local.get(impl)
    funcs[impl] = masked_attention(funcs[impl])
    try:
        yield
    finally:
        if had:
            local[impl] = old
        else:
            del local[impl]


def clear_masks(model: Any) -> int:
    """Drop ``masked_key_indices`` left on attention modules; returns how many entries were masked."""
    n = 0
    for layer in decoder(model).layers:
        idx = getattr(layer.self_attn, "masked_key_indices", None)
        if idx is not None:
            n += int(idx[0].numel())
        if "masked_key_indices" in layer.self_attn.__dict__:
            del layer.self_attn.masked_key_indices
    return n


def masked_entries(model: Any) -> int:
    return sum(int(idx[0].numel()) for layer in decoder(model).layers if (idx := getattr(layer.self_attn, "masked_key_indices", None)) is not None)


def compact(cache: Any) -> None:
    """Copy layer tensors that are views of a bigger storage (a sliding layer keeps a slice of the
    whole prefill), so the cache holds only what it uses."""
    for layer in cache.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor) and t.numel() and t.untyped_storage().nbytes() > t.numel() * t.element_size():
                setattr(layer, name, t.clone())


def uncompressed_bytes(cache: Any) -> int:
    """What the cache would hold with no press: every seen position in pressed layers, the rest as is."""
    from methods._lm import storage_bytes

    total = 0
    for layer in cache.layers:
        k, v = getattr(layer, "keys", None), getattr(layer, "values", None)
        if isinstance(layer, PressedLayer) and k is not None and k.dim() == 4:
            per_token = (k[..., :1, :].numel() * k.element_size()) + (v[..., :1, :].numel() * v.element_size())
            total += per_token * layer.seen
        else:
            total += storage_bytes([k, v])
    return total
