"""Shared pieces for methods built on a Hugging Face causal LM: chunked prefill through a cache,
a greedy token generator, and byte counting of KV caches (``harness.storage``)."""

from __future__ import annotations

from typing import Any, Iterator

import torch

from harness.storage import flat_tensors, storage_bytes  # re-exported: methods count bytes the same way


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """All key/value tensors held by a transformers Cache (any layer type; a quantized layer's
    packed data, scales, zero points and residual, see ``methods._kvquant``)."""
    out: list[torch.Tensor] = []
    for layer in getattr(cache, "layers", []) or []:
        if hasattr(layer, "stored"):
            out.extend(layer.stored().values())
            continue
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                out.append(t)
    return out


def cache_bytes(cache: Any) -> int:
    return storage_bytes(cache_tensors(cache)) if cache is not None else 0


def cache_tokens(cache: Any) -> int:
    """Largest number of cached positions over layers (what a query attends over, at most)."""
    if cache is None:
        return 0
    layers = getattr(cache, "layers", [])
    lens = [layer.held() for layer in layers if hasattr(layer, "stored")]
    lens += [layer.keys.shape[-2] for layer in layers if not hasattr(layer, "stored") and getattr(layer, "keys", None) is not None and layer.keys.dim() == 4]
    return max(lens, default=0)


def compact_sliding(cache: Any, slack: int = 0) -> int:
    """Copy each sliding-window layer's kept keys/values out of a larger allocation when it holds more
    than ``slack`` positions beyond them; returns how many layers were copied.

    transformers' ``DynamicSlidingWindowLayer.update`` concatenates the held tokens with the new
    chunk ([B, H, held + n, D]) and keeps the last ``sliding_window - 1`` positions as a *view* of
    that result, so after a multi-token chunk the layer holds ``held + n`` positions of memory while
    it can attend to ``sliding_window - 1``. The copy frees the rest; the values (and so every later
    token) are unchanged. ``slack=1`` leaves a decode step's one-position surplus alone: copying the
    window after every generated token would cost more time than the one position is worth.
    """
    done = 0
    for layer in getattr(cache, "layers", []) or []:
        if not getattr(layer, "is_sliding", False):
            continue
        k, v = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not isinstance(k, torch.Tensor) or not isinstance(v, torch.Tensor) or k.numel() == 0 or k.dim() != 4:
            continue
        row = k[..., :1, :].numel() * k.element_size()  # bytes of one position: B * H * D * element size
        if max(k.untyped_storage().nbytes(), v.untyped_storage().nbytes()) > (k.shape[-2] + slack) * row:
            layer.keys, layer.values = k.clone(), v.clone()
            done += 1
    return done


@torch.inference_mode()
def forward_chunks(model: torch.nn.Module, cache: Any, ids: list[int], chunk_size: int, after_chunk=None) -> torch.Tensor | None:
    """Run ``ids`` through ``model`` in chunks of ``chunk_size``, appending to ``cache``.

    Returns the logits of the last position ([vocab]) or None when ``ids`` is empty.
    ``after_chunk(cache)`` is called after every forward (used to evict and to track peaks).
    """
    device = model.device
    last = None
    for start in range(0, len(ids), chunk_size):
        x = torch.tensor([ids[start : start + chunk_size]], dtype=torch.long, device=device)  # [1, C]
        out = model(input_ids=x, cache=cache, use_cache=True, logits_to_keep=1)
        last = out.logits[0, -1]  # [V]
        if after_chunk is not None:
            after_chunk(cache)
    return last


@torch.inference_mode()
def greedy(
    model: torch.nn.Module, cache: Any, prompt_ids: list[int], max_new_tokens: int, eos_ids: set[int], chunk_size: int, after_step=None
) -> Iterator[torch.Tensor]:
    """Feed ``prompt_ids`` then decode greedily, yielding each token as a 0-d device tensor.

    Yielding device tensors lets the harness record a CUDA event per token without a host sync;
    the EOS test below syncs once per token, as ``generate`` does.
    """
    logits = forward_chunks(model, cache, prompt_ids, chunk_size, after_step)
    if logits is None:
        raise ValueError("answer() needs at least one prompt token")
    for i in range(max_new_tokens):
        tok = logits.argmax(-1)  # 0-d
        yield tok
        if i == max_new_tokens - 1 or int(tok) in eos_ids:
            return
        out = model(input_ids=tok.view(1, 1), cache=cache, use_cache=True)
        logits = out.logits[0, -1]
        if after_step is not None:
            after_step(cache)


class KVCacheMethod:
    """Mixin for methods whose memory is a transformers KV cache. Subclasses override ``make_cache``."""

    cache: Any = None
    _peak: int = 0
    _attended: int = 0

    def make_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.lm.model.config)

    def _track(self, cache: Any) -> None:
        self._peak = max(self._peak, cache_bytes(cache))  # with the chunk just appended, before compacting
        compact_sliding(cache, slack=1)

    def reset(self) -> None:
        self.cache, self._peak, self._attended = None, 0, 0

    def ingest(self, context) -> None:
        self.cache = self.make_cache()
        forward_chunks(self.lm.model, self.cache, context.all_ids(), self.cfg.chunk_size, self._track)
        compact_sliding(self.cache)  # the memory after ingest holds exactly what the layers keep

    def answer(self, question, max_new_tokens: int):
        if self.cache is None:
            self.cache = self.make_cache()
        self._attended = cache_tokens(self.cache) + len(question.ids)
        yield from greedy(self.lm.model, self.cache, question.ids, max_new_tokens, self.lm.eos_ids, self.cfg.chunk_size)

    def state_bytes(self) -> int:
        return cache_bytes(self.cache)

    persistable = True

    def save_memory(self, folder) -> dict[str, int]:
        from harness import persist as _persist

        tensors, layers = _persist.cache_parts(self.cache)
        return _persist.write(folder, {"kv": tensors}, {"method": self.name, "layers": layers})

    def load_memory(self, folder) -> None:
        from harness import persist as _persist

        parts, meta = _persist.read(folder, self.name)
        self.cache = self.make_cache()
        _persist.fill_cache(self.cache, parts["kv"], meta["layers"], self.lm.device)

    def state_bytes_peak(self) -> int:
        return self._peak

    def attended_tokens(self) -> int:
        return self._attended
