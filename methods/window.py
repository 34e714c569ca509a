"""window: keep only the last ``window`` tokens of KV (plus the first ``sinks`` tokens when set,
which is StreamingLLM). Ingest is chunked and the cache is evicted after every chunk, so peak memory
is bounded by ``sinks + window + chunk_size`` tokens, not by the context length.

Keys keep the rotary positions they were written with (no re-rotation): contexts stay within the
model's trained length here, so the positional gap is in-distribution. Within one ingest chunk a
token can see up to ``window + chunk_size`` tokens back; between chunks and while answering the
bound is ``window`` (+ sinks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

from harness.registry import ConfigError, check
from methods._lm import KVCacheMethod
from methods.base import Method, MethodConfig


@dataclass
class WindowConfig(MethodConfig):
    window: int = 256
    sinks: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(isinstance(self.window, int) and self.window > 0, "method.window", "a positive integer", self.window)
        check(isinstance(self.sinks, int) and self.sinks >= 0, "method.sinks", "an integer >= 0", self.sinks)


class SinkWindowLayer(DynamicLayer):
    """A cache layer holding the first ``sinks`` and the last ``window`` positions.

    The mask treats retained positions as a contiguous block ending at the current position, which is
    exact for causality (every retained token precedes every new one).
    """

    is_sliding = False

    def __init__(self, window: int, sinks: int) -> None:
        super().__init__()
        self.window, self.sinks, self.seen = window, sinks, 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        keys, values = super().update(key_states, value_states, *args, **kwargs)  # [B, H, L, D]
        self.seen += key_states.shape[-2]
        return keys, values

    def evict(self) -> None:
        keep = self.sinks + self.window
        if self.keys is None or self.keys.shape[-2] <= keep:
            return
        # clone: a slice would keep the whole old allocation alive
        k, v = self.keys, self.values
        self.keys = torch.cat([k[..., : self.sinks, :], k[..., -self.window :, :]], dim=-2).clone()
        self.values = torch.cat([v[..., : self.sinks, :], v[..., -self.window :, :]], dim=-2).clone()

    def get_seq_length(self) -> int:
        return self.seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        held = 0 if self.keys is None or self.keys.numel() == 0 else self.keys.shape[-2]
        return held + query_length, self.seen - held


class Window(KVCacheMethod, Method):
    name = "window"
    Config = WindowConfig
    contract_overrides = {"window": 64}  # the contract tests' contexts are shorter than the default 256

    def validate(self, context_tokens: int) -> None:
        if self.cfg.window + self.cfg.sinks >= context_tokens:
            raise ConfigError(
                f"invalid value for 'method.window': {self.cfg.window} (+ sinks {self.cfg.sinks}) is not smaller than the "
                f"context ({context_tokens} tokens); expected a window below the context length, or use method=full_kv"
            )

    def make_cache(self) -> Any:
        cache = super().make_cache()
        keep = self.cfg.window + self.cfg.sinks
        for i, layer in enumerate(cache.layers):
            # a native sliding layer already smaller than our window is left alone
            if getattr(layer, "is_sliding", False) and getattr(layer, "sliding_window", keep + 1) <= keep:
                continue
            cache.layers[i] = SinkWindowLayer(self.cfg.window, self.cfg.sinks)
        return cache

    def _track(self, cache: Any) -> None:
        super()._track(cache)  # the peak includes the chunk just appended
        for layer in cache.layers:
            if isinstance(layer, SinkWindowLayer):
                layer.evict()

    def answer(self, question, max_new_tokens: int):
        # evict after every decode step too, so answering stays within the window
        if self.cache is None:
            self.cache = self.make_cache()
        from methods._lm import cache_tokens, greedy

        self._attended = cache_tokens(self.cache) + len(question.ids)
        yield from greedy(self.lm.model, self.cache, question.ids, max_new_tokens, self.lm.eos_ids, self.cfg.chunk_size, self._track)
