"""full_kv: the whole context stays in the model's KV cache — the accuracy reference and the cost
every memory method is trying to beat. Note that models with sliding-window layers (Gemma 3) keep
only their window in those layers; the bytes reported are what the cache really holds.

``kv_quantization=int8|int4`` stores the cache quantized (``methods/_kvquant.py``: per-token
groups of ``kv_group_size`` channels, float16 scale and zero point, the last ``kv_residual`` tokens
kept in the model's dtype); state bytes are then the packed data, scales, zero points and residual."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from harness.registry import ConfigError, check
from methods._kvquant import KV_QUANTIZATIONS, group_for, quantized_cache
from methods._lm import KVCacheMethod
from methods.base import Method, MethodConfig


def check_kv_quantization(value: Any) -> None:
    """Raise a ConfigError naming ``method.kv_quantization`` (with a did-you-mean) for a bad value."""
    if value in KV_QUANTIZATIONS:
        return
    close = difflib.get_close_matches(str(value), list(KV_QUANTIZATIONS), n=1)
    hint = f", did you mean '{close[0]}'?" if close else ";"
    raise ConfigError(f"invalid value for 'method.kv_quantization': {value!r}{hint} expected one of {', '.join(KV_QUANTIZATIONS)}")


@dataclass
class FullKVConfig(MethodConfig):
    kv_quantization: str = "none"  # none | int8 | int4: how the cache is stored
    kv_group_size: int = 32  # channels of head_dim sharing one scale and zero point (clipped to head_dim)
    kv_residual: int = 32  # most recent tokens kept in the model's dtype (0: quantize all)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_kv_quantization(self.kv_quantization)
        g = self.kv_group_size
        check(isinstance(g, int) and g >= 2 and g & (g - 1) == 0, "method.kv_group_size", "a power of two >= 2", g)
        check(isinstance(self.kv_residual, int) and self.kv_residual >= 0, "method.kv_residual", "an integer >= 0", self.kv_residual)


class FullKV(KVCacheMethod, Method):
    name = "full_kv"
    Config = FullKVConfig

    def _kv(self) -> str:
        return getattr(self.cfg, "kv_quantization", "none")  # a subclass may bring a Config without it

    def make_cache(self) -> Any:
        bits = KV_QUANTIZATIONS[self._kv()]
        if bits is None:
            return super().make_cache()
        return quantized_cache(self.lm.model.config, bits, self.cfg.kv_group_size, self.cfg.kv_residual)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self._kv() != "none":
            text = self.lm.model.config.get_text_config(decoder=True)
            head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
            out["kv_quantization"] = (f"{self.cfg.kv_quantization}: per-token groups of {group_for(head_dim, self.cfg.kv_group_size)} channels, "
                                      f"float16 scale + zero point, last {self.cfg.kv_residual} tokens in the model's dtype")
        return out
