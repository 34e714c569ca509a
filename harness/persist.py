"""Saving a method's memory after ingest and restoring it in another process.

A saved memory is a folder: one safetensors file per part (``kv.safetensors``, ``state.safetensors``,
...) and ``meta.json`` (what is not a tensor: layer kinds, counters). Nothing is pickled. The folder
is written under a temporary name next to the target and renamed into place, so a crash never leaves
a half-written memory behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

META = "meta.json"
FORMAT = 1


def write(folder: str | Path, parts: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any]) -> dict[str, int]:
    """Write ``parts`` (part -> {name: tensor}) and ``meta`` atomically; return tensor bytes per part."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    sizes: dict[str, int] = {}
    try:
        for part, tensors in parts.items():
            flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
            sizes[part] = sum(t.numel() * t.element_size() for t in flat.values())
            save_file(flat, str(tmp / f"{part}.safetensors"))
        (tmp / META).write_text(json.dumps({"format": FORMAT, "parts": sorted(parts), **meta}, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sizes


def read(folder: str | Path, method: str) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read a folder written by ``write``; errors name the file and what is wrong."""
    from safetensors.torch import load_file

    folder = Path(folder)
    path = folder / META
    if not path.exists():
        raise FileNotFoundError(f"{path}: no saved memory here (meta.json missing)")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("method") != method:
        raise ValueError(f"{path}: memory saved by method '{meta.get('method')}', cannot be restored into '{method}'")
    parts = {p: load_file(str(folder / f"{p}.safetensors")) for p in meta.get("parts", [])}
    return parts, meta


def file_bytes(folder: str | Path) -> dict[str, int]:
    """Bytes on disk per file of a saved memory (safetensors headers and meta.json included)."""
    return {p.name: p.stat().st_size for p in sorted(Path(folder).iterdir()) if p.is_file()}


# -- KV caches -------------------------------------------------------------------------------------
_COUNTERS = ("cumulative_length", "seen", "frame")  # sliding layers count every token seen, not only the held ones; window layers also their next position


def cache_parts(cache: Any) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Tensors ({"<i>.keys", "<i>.values"}: [B, H, L, D] each; a quantized layer's packed data,
    scales, zero points and residual as "<i>.<name>") and per-layer metadata of a cache."""
    tensors: dict[str, torch.Tensor] = {}
    layers: list[dict[str, Any]] = []
    for i, layer in enumerate(getattr(cache, "layers", []) if cache is not None else []):
        info: dict[str, Any] = {"kind": type(layer).__name__, "held": False}
        if hasattr(layer, "stored"):  # methods._kvquant: the stored tensors as they are, never dequantized
            stored = layer.stored()
            tensors.update({f"{i}.{name}": t for name, t in stored.items()})
            info.update(held=bool(stored), tensors=sorted(stored), quant={"bits": layer.bits, "group": layer.group, "residual": layer.residual},
                        dtype=str(layer.keys.dtype).replace("torch.", "") if layer.keys is not None else None)
        else:
            k, v = getattr(layer, "keys", None), getattr(layer, "values", None)
            if isinstance(k, torch.Tensor) and k.numel() > 0:
                tensors[f"{i}.keys"], tensors[f"{i}.values"] = k, v
                info["held"], info["dtype"] = True, str(k.dtype).replace("torch.", "")
        info.update({c: int(getattr(layer, c)) for c in _COUNTERS if hasattr(layer, c)})
        layers.append(info)
    return tensors, layers


def fill_cache(cache: Any, tensors: dict[str, torch.Tensor], layers: list[dict[str, Any]], device: torch.device) -> None:
    """Put saved tensors back into a fresh cache built by the same method configuration."""
    if len(cache.layers) != len(layers):
        raise ValueError(f"saved memory has {len(layers)} cache layers, the model has {len(cache.layers)}")
    for i, (layer, info) in enumerate(zip(cache.layers, layers)):
        if type(layer).__name__ != info["kind"]:
            raise ValueError(f"cache layer {i}: saved as {info['kind']}, this configuration builds {type(layer).__name__}")
        if hasattr(layer, "restore"):
            saved, now = info.get("quant"), {"bits": layer.bits, "group": layer.group, "residual": layer.residual}
            if saved != now:
                raise ValueError(f"cache layer {i}: memory saved with KV quantization {saved}, this configuration uses {now} "
                                 "(method.kv_quantization / kv_group_size / kv_residual must match)")
            if info["held"]:
                dtype = getattr(torch, info["dtype"]) if info.get("dtype") else torch.float32
                layer.restore({n: tensors[f"{i}.{n}"] for n in info["tensors"]}, dtype, device)
        elif info["held"]:
            k, v = tensors[f"{i}.keys"].to(device), tensors[f"{i}.values"].to(device)
            layer.lazy_initialization(k, v)
            layer.keys, layer.values = k, v
        for c in _COUNTERS:
            if c in info:
                setattr(layer, c, info[c])
