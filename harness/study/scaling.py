"""Cost scaling: full KV bytes predicted from the backbone's config, and log–log slopes.

Why predict: a full KV cache is a known function of the attention layout, so a measured
``state_bytes`` that departs from it means the cache is not what the model needs (e.g. sliding-
window layers that keep every token). A global layer holds every token; a sliding-window layer of
transformers' cache (``DynamicSlidingWindowLayer``) holds the last ``sliding_window - 1`` tokens,
because the next query is the window's last position. For T context tokens:

    bytes(T) = 2 (K and V) · kv_heads · head_dim · bytes_per_element
               · (n_global · T + n_sliding · min(T, sliding_window − 1))

On Gemma 3 270M (18 layers, 15 sliding with a 512-token window, 1 KV head of 256, fp32 on CPU)
that is 2 KiB per token per layer: 6 KiB per token beyond 511 tokens, plus 15 × 511 × 2 KiB.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


#: attention layer types the prediction covers (transformers' ``config.layer_types`` names)
LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclass(frozen=True)
class KVLayout:
    layer_types: tuple[str, ...]  # "full_attention" | "sliding_attention", one per layer
    sliding_window: int | None
    kv_heads: int
    head_dim: int
    source: str  # where the config came from

    def kept_tokens(self, layer_type: str, tokens: int) -> int:
        """Positions one layer of this type holds after ``tokens`` tokens of context."""
        if layer_type == "sliding_attention" and self.sliding_window:
            return min(tokens, self.sliding_window - 1)  # DynamicSlidingWindowLayer keeps window - 1
        return tokens

    def bytes(self, tokens: int, element_bytes: int) -> int:
        """Bytes of full KV after ingesting ``tokens`` tokens: per layer, kept positions × K and V ×
        kv_heads × head_dim × ``element_bytes``."""
        per_token = 2 * self.kv_heads * self.head_dim * element_bytes  # K and V of one layer, one position
        return sum(per_token * self.kept_tokens(t, int(tokens)) for t in self.layer_types)


def layout_from_config(cfg: dict[str, Any], source: str) -> tuple[KVLayout | None, str | None]:
    """(layout, reason when the config's attention layout is not covered) from a text config dict.

    Without ``layer_types`` every layer is sliding when ``sliding_window`` is set (as transformers
    builds its cache), else global; ``use_sliding_window: false`` (Qwen) switches the window off."""
    n = int(cfg["num_hidden_layers"])
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) is not False else None
    types = tuple(cfg.get("layer_types") or [("sliding_attention" if window else "full_attention")] * n)
    other = sorted(set(types) - set(LAYER_TYPES))
    if other:
        return None, f"{source}: layer types {other} are not covered (only {', '.join(LAYER_TYPES)})"
    if "sliding_attention" in types and not window:
        return None, f"{source}: sliding_attention layers without a sliding_window"
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    heads = int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"])
    return KVLayout(types, int(window) if window else None, heads, int(head_dim), source), None


def model_layout(model: dict[str, Any]) -> tuple[KVLayout | None, str | None]:
    """(layout, reason when unknown) for a run's ``model`` config block; never loads weights.

    tiny_random builds its config in code; converted models read ``config.json`` from the cache
    folder the harness converts them into (``model.cache_dir``, $MEMHARNESS_CACHE or
    ~/.cache/memharness, then ``<source>/config.json``); ``model=hf`` reads ``<model.path>/config.json``."""
    source = str(model.get("source") or "")
    if source == "tiny_random":
        from harness.tiny import byte_tokenizer, tiny_config

        cfg = tiny_config(str(model.get("family") or "gemma3"), len(byte_tokenizer())).to_dict()
        return layout_from_config(cfg, f"harness.tiny.tiny_config({model.get('family') or 'gemma3'!r})")
    if source == "hf":  # a local folder (a hub id's config would need the hub cache: not looked up)
        path = Path(str(model.get("path") or "")) / "config.json"
    else:
        root = model.get("cache_dir") or os.environ.get("MEMHARNESS_CACHE") or str(Path.home() / ".cache" / "memharness")
        path = Path(root) / source / "config.json"
    if not path.is_file():
        return None, f"model config not found at {path} (run the model once to convert it)"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg = cfg.get("text_config", cfg)
    return layout_from_config(cfg, str(path))


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, str | None]:
    """Least-squares slope of log y on log x (1 = linear growth, 0 = constant), with a reason when
    it cannot be fitted (fewer than 2 distinct positive points)."""
    pts = [(float(a), float(b)) for a, b in zip(x, y) if a is not None and b is not None
           and not (math.isnan(float(a)) or math.isnan(float(b))) and a > 0 and b > 0]
    if len({a for a, _ in pts}) < 2:
        return None, "fewer than 2 context lengths with positive values"
    lx, ly = np.log([a for a, _ in pts]), np.log([b for _, b in pts])
    return float(np.polyfit(lx, ly, 1)[0]), None
