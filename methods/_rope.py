"""Rotary position embedding (RoPE) of one attention layer, for caches that move keys to new positions.

Hugging Face attention layers rotate keys before they reach the cache, and with RoPE a rotation by
angle ``p * f`` followed by one by ``-p * f`` is the identity. So a cache can un-rotate incoming keys
(store them position-free) and rotate them again to any position it chooses when they are read.
Each layer uses its own inverse frequencies: Gemma 3, for one, gives its sliding-window layers a
local base (10k) and its full-attention layers a global one (1M).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.registry import ConfigError

#: RoPE variants whose frequencies change with the sequence length: a stored key could not be
#: un-rotated with the frequencies in force later, so re-positioning is refused for them
DYNAMIC_ROPE = ("dynamic", "longrope")


@dataclass
class Rope:
    inv_freq: torch.Tensor  # [D/2] fp32, the layer's inverse frequencies (scaling already applied)

    def rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``x`` [B, H, L, D] rotated by ``positions`` [L] (ints, may be negative), in fp32, returned in x's dtype.

        The same rotate-half convention as the models' ``apply_rotary_pos_emb``: dims i and i + D/2
        form one rotating pair with frequency ``inv_freq[i]``."""
        angles = positions.to(device=x.device, dtype=torch.float32)[:, None] * self.inv_freq.to(x.device)[None, :]  # [L, D/2]
        cos, sin = angles.cos(), angles.sin()
        xf = x.float()
        x1, x2 = xf[..., : xf.shape[-1] // 2], xf[..., xf.shape[-1] // 2 :]  # [B, H, L, D/2] each
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


def _rotary_module(model: Any) -> Any:
    for name, module in model.named_modules():
        if name.split(".")[-1] == "rotary_emb":
            return module
    return None


def layer_ropes(model: Any, num_layers: int, field: str) -> list[Rope]:
    """One ``Rope`` per decoder layer of a Hugging Face causal LM; a ConfigError naming ``field`` when
    the model has no RoPE this module can move (no rotary module, partial rotary, dynamic scaling)."""
    rot = _rotary_module(model)
    cfg = getattr(model.config, "get_text_config", lambda: model.config)()
    if rot is None:
        raise ConfigError(f"invalid value for '{field}': shifted needs a model with rotary position embeddings; "
                          f"{type(model).__name__} has none (use original)")
    layer_types = getattr(cfg, "layer_types", None) or [None] * num_layers
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    out = []
    for i in range(num_layers):
        lt = layer_types[i]
        # Gemma 3 keeps one set of frequencies per layer type ("<type>_inv_freq"); Llama, Qwen3: "inv_freq"
        inv = getattr(rot, f"{lt}_inv_freq", None) if lt is not None else None
        inv = rot.inv_freq if inv is None else inv
        rope_type = rot.rope_type.get(lt, "default") if isinstance(getattr(rot, "rope_type", None), dict) else getattr(rot, "rope_type", "default")
        if any(d in str(rope_type) for d in DYNAMIC_ROPE):
            raise ConfigError(f"invalid value for '{field}': shifted cannot re-position keys under RoPE type "
                              f"'{rope_type}' (its frequencies change with the length); use original")
        if inv.numel() * 2 != head_dim:
            raise ConfigError(f"invalid value for '{field}': shifted needs RoPE over the whole head "
                              f"({head_dim} dims), this model rotates {inv.numel() * 2}; use original")
        out.append(Rope(inv.detach().float()))
    return out
