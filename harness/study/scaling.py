"""Cost scaling: full KV bytes predicted from the backbone's config, and log–log slopes.

Why predict: a full KV cache is a known function of the attention layout, so a measured
``state_bytes`` that departs from it means the cache is not what the model needs (e.g. sliding-
window layers that keep every token). On Gemma 3, sliding-window layers hold at most
``sliding_window`` tokens and the global layers every token:

    bytes(T) = 2 (K and V) · kv_heads · head_dim · bytes_per_element
               · (n_global · T + n_sliding · min(T, sliding_window))
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


@dataclass(frozen=True)
class KVLayout:
    layer_types: tuple[str, ...]  # "full_attention" | "sliding_attention", one per layer
    sliding_window: int | None
    kv_heads: int
    head_dim: int
    source: str  # where the config came from

    def bytes(self, tokens: float, element_bytes: int) -> float:
        per_token = 2 * self.kv_heads * self.head_dim * element_bytes  # K and V of one layer
        total = 0.0
        for t in self.layer_types:
            cap = self.sliding_window if t == "sliding_attention" and self.sliding_window else None
            total += per_token * (min(tokens, cap) if cap else tokens)
        return total


def layout_from_config(cfg: dict[str, Any], source: str) -> KVLayout:
    n = int(cfg["num_hidden_layers"])
    types = tuple(cfg.get("layer_types") or ["full_attention"] * n)
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return KVLayout(types, cfg.get("sliding_window"), int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"]),
                    int(head_dim), source)


def model_layout(model: dict[str, Any]) -> tuple[KVLayout | None, str | None]:
    """(layout, reason when unknown) for a run's ``model`` config block; never loads weights.

    tiny_random builds its config in code; converted models read ``config.json`` from the cache
    folder the harness converts them into (``model.cache_dir``, $MEMHARNESS_CACHE or
    ~/.cache/memharness, then ``<source>/config.json``)."""
    source = str(model.get("source") or "")
    if source == "tiny_random":
        from harness.tiny import byte_tokenizer, tiny_config

        cfg = tiny_config(str(model.get("family") or "gemma3"), len(byte_tokenizer())).to_dict()
        return layout_from_config(cfg, f"harness.tiny.tiny_config({model.get('family') or 'gemma3'!r})"), None
    root = model.get("cache_dir") or os.environ.get("MEMHARNESS_CACHE") or str(Path.home() / ".cache" / "memharness")
    path = Path(root) / source / "config.json"
    if not path.is_file():
        return None, f"model config not found at {path} (run the model once to convert it)"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg = cfg.get("text_config", cfg)
    return layout_from_config(cfg, str(path)), None


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, str | None]:
    """Least-squares slope of log y on log x (1 = linear growth, 0 = constant), with a reason when
    it cannot be fitted (fewer than 2 distinct positive points)."""
    pts = [(float(a), float(b)) for a, b in zip(x, y) if a is not None and b is not None
           and not (math.isnan(float(a)) or math.isnan(float(b))) and a > 0 and b > 0]
    if len({a for a, _ in pts}) < 2:
        return None, "fewer than 2 context lengths with positive values"
    lx, ly = np.log([a for a, _ in pts]), np.log([b for _, b in pts])
    return float(np.polyfit(lx, ly, 1)[0]), None
