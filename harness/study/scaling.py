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
import pandas as pd

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
        shown = f"{path.parent.name}/config.json"
    else:
        root = model.get("cache_dir") or os.environ.get("MEMHARNESS_CACHE") or str(Path.home() / ".cache" / "memharness")
        path = Path(root) / source / "config.json"
        shown = f"<model cache>/{source}/config.json"
    if not path.is_file():
        return None, f"model config not found at {shown} (run the model once to convert it)"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg = cfg.get("text_config", cfg)
    return layout_from_config(cfg, shown)


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, str | None]:
    """Least-squares slope of log y on log x (1 = linear growth, 0 = constant), with a reason when
    it cannot be fitted (fewer than 2 distinct positive points)."""
    pts = [(float(a), float(b)) for a, b in zip(x, y) if a is not None and b is not None
           and not (math.isnan(float(a)) or math.isnan(float(b))) and a > 0 and b > 0]
    if len({a for a, _ in pts}) < 2:
        return None, "fewer than 2 context lengths with positive values"
    lx, ly = np.log([a for a, _ in pts]), np.log([b for _, b in pts])
    return float(np.polyfit(lx, ly, 1)[0]), None


#: the method whose bytes the layout predicts: the whole context in the backbone's KV cache
PREDICTED_METHOD = "full_kv"


def element_bytes(dtype: Any) -> tuple[int | None, str | None]:
    name = str(dtype).replace("torch.", "") if dtype is not None else ""
    if name in DTYPE_BYTES:
        return DTYPE_BYTES[name], None
    return None, f"dtype {dtype!r} of the KV cache is not one of {', '.join(DTYPE_BYTES)}"


def _quantized(row: Any) -> bool:
    q = row.get("method.kv_quantization")
    return q is not None and not (isinstance(q, float) and math.isnan(q)) and str(q) not in ("none", "None", "null", "")


def predict_rows(d: pd.DataFrame, models: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """``d`` (tidy rows) with ``predicted_state_bytes`` (full KV from the model config at the row's
    ``context_tokens``) and ``predicted_state_bytes_reason`` where there is no prediction."""
    layouts = {m: model_layout(cfg) for m, cfg in models.items()}
    pred, why = [], []
    for _, r in d.iterrows():
        layout, reason = layouts.get(r["model"], (None, f"no model config recorded for {r['model']}"))
        eb, eb_why = element_bytes(r.get("dtype"))
        if r.get("method") != PREDICTED_METHOD:
            p, reason = None, f"the prediction covers {PREDICTED_METHOD} (the whole context in the backbone's KV cache) only"
        elif _quantized(r):
            p, reason = None, "quantized KV: the prediction covers the model's own dtype"
        elif layout is None or eb is None:
            p, reason = None, reason if layout is None else eb_why
        elif r.get("context_tokens") is None or pd.isna(r.get("context_tokens")):
            p, reason = None, "context_tokens not recorded"
        else:
            p, reason = layout.bytes(int(r["context_tokens"]), eb), None
        pred.append(p)
        why.append(reason)
    return d.assign(predicted_state_bytes=pd.array(pred, dtype="Float64").astype(float), predicted_state_bytes_reason=why)


def curve(layout: KVLayout, eb: int, lo: float, hi: float, points: int = 48) -> list[tuple[int, int]]:
    """(tokens, predicted bytes) from ``lo`` to ``hi`` tokens, log-spaced, with the sliding layers'
    knee (``sliding_window - 1``) included when it falls inside, for drawing the predicted line."""
    xs = {int(round(x)) for x in np.geomspace(max(1.0, lo), max(lo, hi), points)}
    if layout.sliding_window and lo <= layout.sliding_window - 1 <= hi:
        xs.add(layout.sliding_window - 1)
    return [(x, layout.bytes(x, eb)) for x in sorted(xs)]


def layout_text(model: str, layout: KVLayout, eb: int) -> str:
    """One sentence naming the layout the prediction uses, every number taken from the config."""
    n_sl, n_gl = layout.layer_types.count("sliding_attention"), layout.layer_types.count("full_attention")
    per = 2 * layout.kv_heads * layout.head_dim * eb
    sliding = (f"{n_sl} sliding-window layers (window {layout.sliding_window}: they keep the last {layout.sliding_window - 1} "
               f"positions) and " if n_sl else "")
    return (f"{model}: {sliding}{n_gl} global layers (every position), {layout.kv_heads} KV head(s) × head_dim "
            f"{layout.head_dim} × {eb} B, K and V: {per:,} B per position per layer (from {layout.source}).")
