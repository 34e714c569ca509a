"""window: keep only the last ``window`` tokens of KV, plus the first ``sinks`` tokens when set.
Ingest is chunked and the cache is evicted after every chunk, so peak memory is bounded by
``sinks + window + chunk_size`` tokens, not by the context length.

Two position schemes (``method.positions``):

- ``original`` (default): keys keep the rotary positions they were written at and new tokens get
  their position in the whole text, so the evicted middle leaves a positional gap between the sinks
  and the window. Contexts stay within the model's trained length here, so the gap is in-distribution.
- ``shifted``: StreamingLLM as published (Xiao et al., 2023): positions are assigned *inside the
  cache* — sinks at 0..S-1, the window right after them, contiguous, and new tokens right after the
  cache. Keys are stored un-rotated and rotated to their cache position with their own layer's RoPE
  at every read, so evicting never compounds rounding; positions never exceed ``sinks + window +
  chunk_size``.

RoPE depends only on the distance between a query and a key, so with ``sinks=0`` both schemes give
the same attention (up to rounding); they differ by the gap once ``sinks > 0``. ``original`` stays
the default so that earlier results remain comparable.

Within one ingest chunk a token can see up to ``window + chunk_size`` tokens back; between chunks
and while answering the bound is ``window`` (+ sinks). Models with native sliding-window layers
(Gemma 3): a sliding layer already within ``sinks + window`` keeps its own cache under ``original``;
under ``shifted`` it moves to cache positions like every other layer and holds only the last
``sliding_window - 1`` cached tokens it can attend to.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

from harness.registry import ConfigError, check
from methods._lm import KVCacheMethod, cache_tokens, greedy
from methods._rope import Rope, layer_ropes
from methods.base import Method, MethodConfig

POSITIONS = ("original", "shifted")
SCHEME = {
    "original": "original: keys keep their positions in the text (a gap between sinks and window)",
    "shifted": "shifted (StreamingLLM): positions inside the cache, sinks then the window, contiguous",
}


@dataclass
class WindowConfig(MethodConfig):
    window: int = 256
    sinks: int = 0
    positions: str = "original"  # original | shifted (StreamingLLM)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(isinstance(self.window, int) and self.window > 0, "method.window", "a positive integer", self.window)
        check(isinstance(self.sinks, int) and self.sinks >= 0, "method.sinks", "an integer >= 0", self.sinks)
        if self.positions not in POSITIONS:
            close = difflib.get_close_matches(str(self.positions), POSITIONS, n=1)
            hint = f", did you mean '{close[0]}'?" if close else ";"
            raise ConfigError(f"invalid value for 'method.positions': {self.positions!r}{hint} expected original or shifted (shifted = StreamingLLM)")


class SinkWindowLayer(DynamicLayer):
    """A cache layer holding the first ``sinks`` and the last ``window`` positions.

    ``frame`` is the position the next token gets. Without ``rope`` (original positions) it is the
    number of tokens seen; the mask treats the held tokens as a contiguous block ending there, which
    is exact for causality (every retained token precedes every new one). With ``rope`` (shifted
    positions) eviction lowers it to ``sinks + window``: the held tokens sit at ``frame - held ..
    frame - 1``, keys are stored un-rotated and rotated to those positions when read.
    ``limit`` (shifted only) keeps just the last ``limit`` tokens, for a native sliding-window layer
    that cannot attend further back; it requires ``limit <= window`` so those are all window tokens.
    """

    is_sliding = False

    def __init__(self, window: int, sinks: int, rope: Rope | None = None, limit: int | None = None) -> None:
        super().__init__()
        self.window, self.sinks, self.seen, self.frame = window, sinks, 0, 0
        self.rope, self.limit = rope, limit
        if limit is not None:
            self.is_sliding = True  # the model's sliding mask is built from this layer's sizes

    def held(self) -> int:
        return 0 if self.keys is None or self.keys.numel() == 0 else self.keys.shape[-2]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        n = key_states.shape[-2]  # key_states: [B, H, n, D], rotated by the model at frame .. frame+n-1
        if self.rope is None:
            keys, values = super().update(key_states, value_states, *args, **kwargs)
        else:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            h, dev = self.held(), key_states.device
            old = self.keys  # [B, H, h, D] un-rotated
            new = torch.arange(self.frame, self.frame + n, device=dev)
            self.keys = torch.cat([old, self.rope.rotate(key_states, -new)], dim=-2)
            self.values = torch.cat([self.values, value_states], dim=-2)
            # the incoming keys are returned as the model rotated them; only the held ones are moved
            moved = self.rope.rotate(old, torch.arange(self.frame - h, self.frame, device=dev)) if h else old
            keys, values = torch.cat([moved, key_states], dim=-2), self.values
        self.seen += n
        self.frame += n
        return keys, values

    def evict(self) -> None:
        if self.rope is not None:
            self.frame = min(self.frame, self.sinks + self.window)
        h = self.held()
        if self.limit is not None and self.rope is not None:
            if h > self.limit:  # clone: a slice would keep the whole old allocation alive
                self.keys, self.values = self.keys[..., -self.limit :, :].clone(), self.values[..., -self.limit :, :].clone()
            return
        if h <= self.sinks + self.window:
            return
        k, v = self.keys, self.values
        self.keys = torch.cat([k[..., : self.sinks, :], k[..., -self.window :, :]], dim=-2).clone()
        self.values = torch.cat([v[..., : self.sinks, :], v[..., -self.window :, :]], dim=-2).clone()

    def get_seq_length(self) -> int:
        return self.frame  # the models place new tokens (RoPE and masks) from here

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        held = self.held()
        return held + query_length, self.frame - held


class Window(KVCacheMethod, Method):
    name = "window"
    Config = WindowConfig
    contract_overrides = {"window": 64}  # the contract tests' contexts are shorter than the default 256

    @classmethod
    def context_problem(cls, cfg: WindowConfig, context_tokens: int) -> str | None:
        if cfg.window + cfg.sinks >= context_tokens:
            return (f"invalid value for 'method.window': {cfg.window} (+ sinks {cfg.sinks}) is not smaller than the "
                    f"context ({context_tokens} tokens); expected a window below the context length, or use method=full_kv")
        return None

    def validate(self, context_tokens: int) -> None:
        if self.cfg.positions == "shifted":
            self.make_cache()  # a model whose RoPE cannot be moved fails here, before any sample runs
        super().validate(context_tokens)

    def make_cache(self) -> Any:
        cache = super().make_cache()
        W, S = self.cfg.window, self.cfg.sinks
        shifted = self.cfg.positions == "shifted"
        ropes = layer_ropes(self.lm.model, len(cache.layers), "method.positions") if shifted else [None] * len(cache.layers)
        for i, layer in enumerate(cache.layers):
            sw = getattr(layer, "sliding_window", None) if getattr(layer, "is_sliding", False) else None
            if sw is not None and sw <= W + S:
                if not shifted:
                    continue  # a native sliding layer already within the window keeps its own cache
                if sw - 1 <= W:
                    cache.layers[i] = SinkWindowLayer(W, S, ropes[i], limit=sw - 1)
                    continue
            # otherwise the model's sliding mask (if any) applies to the cached sequence as it is
            cache.layers[i] = SinkWindowLayer(W, S, ropes[i])
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
        self._attended = cache_tokens(self.cache) + len(question.ids)
        yield from greedy(self.lm.model, self.cache, question.ids, max_new_tokens, self.lm.eos_ids, self.cfg.chunk_size, self._track)

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        return {**super().describe(), "positions": SCHEME[c.positions], "window": c.window, "sinks": c.sinks}
