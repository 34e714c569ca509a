"""Weight-only quantization of the backbone (``model.quantization``: none | int8 | int4), with torchao.

- int8: ``Int8WeightOnlyConfig`` (per-channel int8 data + scales), CPU and CUDA.
- int4: on CUDA ``Int4WeightOnlyConfig`` (group 128, tinygemm's packed layout: two weights a byte);
  on CPU torchao 0.18 has no packed int4 layout that runs (plain/preshuffled need mslk,
  plain_int32 and tile_packed_to_4d need a GPU), so ``IntxWeightOnlyConfig(int4, group 32)`` is
  used: int4 values stored one per int8 byte plus per-group scales. The memory card counts what is
  really stored, so on CPU int4 weights are no smaller than int8 ones — reported, not hidden.

Only ``nn.Linear`` layers are quantized. Tied embeddings: when the LM head shares its weight with
the input embedding (Gemma 3, Qwen3), the head is left in ``model.dtype`` together with the
embedding: quantizing the head alone would add an int8 copy of the 262k × 640 matrix next to the
unquantized embedding (weights grow: 511 → 578 MiB on Gemma 3 270M in bf16).
"""

from __future__ import annotations

from typing import Any

import torch

from harness.registry import ConfigError

QUANTIZATIONS = ("none", "int8", "int4")
INT4_GROUP_CPU, INT4_GROUP_CUDA = 32, 128


def _tied_head(model: Any) -> torch.nn.Module | None:
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and emb is not None and head.weight is emb.weight:
        return head
    return None


def quantize(model: Any, kind: str, device: torch.device) -> dict[str, Any]:
    """Quantize ``model``'s Linear weights in place; return what was done (for the run's load info)."""
    if kind == "none":
        return {"quantization": "none"}
    try:
        from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, IntxWeightOnlyConfig, quantize_
        from torchao.quantization.granularity import PerGroup
    except ImportError as e:
        raise ConfigError(f"model.quantization={kind} needs torchao (pip install 'memharness[quant]')") from e
    if kind == "int8":
        cfg, desc = Int8WeightOnlyConfig(), "torchao Int8WeightOnlyConfig (per-channel)"
    elif device.type == "cuda":
        cfg, desc = Int4WeightOnlyConfig(group_size=INT4_GROUP_CUDA), f"torchao Int4WeightOnlyConfig (group {INT4_GROUP_CUDA}, packed)"
    else:
        cfg = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP_CPU))
        desc = f"torchao IntxWeightOnlyConfig int4 (group {INT4_GROUP_CPU}; CPU: one int4 value per int8 byte)"
    skip = _tied_head(model)
    count = {"n": 0}

    def want(module: torch.nn.Module, fqn: str) -> bool:
        ok = isinstance(module, torch.nn.Linear) and module is not skip
        count["n"] += ok
        return ok

    quantize_(model, cfg, filter_fn=want)
    return {"quantization": kind, "quantization_method": desc, "quantized_linear_layers": count["n"],
            "tied_head": "kept in model.dtype with the embedding it shares" if skip is not None else "not tied"}
