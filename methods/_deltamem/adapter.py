"""Adapter files: ours (``adapter.safetensors`` + ``adapter.json``) and the official δ-mem format
(``delta_mem_adapter.pt``, a plain dict of tensors, + ``delta_mem_config.json``).

The official ``.pt`` is read with ``torch.load(weights_only=True)`` only. Its config is checked
field by field against what our modules implement; anything else is refused with an error naming
the field, never loaded approximately (docs/deltamem.md §8).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.registry import ConfigError
from methods._deltamem.layer import Spec

OURS = ("adapter.safetensors", "adapter.json")
OFFICIAL = ("delta_mem_adapter.pt", "delta_mem_config.json")
FORMAT = "memharness-deltamem/1"

# official config fields we implement only at one value (official defaults when absent)
_REQUIRED = {
    "state_update_mode": "standard", "couple_lambda": True, "rankwise_gates": True, "normalize_qk": True,
    "delta_o_rmsnorm": False, "trainable_delta_scale": False, "memory_readout_mode": "delta",
    "memory_write_source": "learned_hidden", "num_memory_partitions": 1, "num_global_memory_partitions": 0,
    "memory_reader_layers": [], "latent_memory_layers": [], "delta_scale_parameterization": "alpha_over_rank",
}
_GRANULARITY = {"token": "token", "message_mean": "message"}
_OFFICIAL_TENSORS = ("memory_q_proj", "memory_k_proj", "memory_v_proj", "beta_proj", "beta_bias",
                     "delta_q_proj", "delta_k_proj", "delta_v_proj", "delta_o_proj")


def _model_info(model: nn.Module) -> dict[str, Any]:
    c = model.config
    return {"model_type": c.model_type, "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers}


def save(model: nn.Module, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the attached adapter in our format; ``extra`` (training description, losses) goes into the JSON."""
    from safetensors.torch import save_file

    from methods._deltamem.attach import get_adapter

    ad = get_adapter(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in ad.state_dict().items()}
    save_file(tensors, str(folder / OURS[0]))
    meta = {"format": FORMAT, "spec": asdict(ad.spec), "model": _model_info(model), **(extra or {})}
    (folder / OURS[1]).write_text(json.dumps(meta, indent=2, default=list) + "\n")
    return folder


def kind(folder: str | Path) -> str:
    folder = Path(folder)
    if all((folder / f).exists() for f in OURS):
        return "ours"
    if all((folder / f).exists() for f in OFFICIAL):
        return "official"
    raise ConfigError(f"invalid δ-mem adapter folder {str(folder)!r}: expected {' + '.join(OURS)} or {' + '.join(OFFICIAL)}")


def load(model: nn.Module, folder: str | Path):
    """Attach δ-mem to ``model`` with the weights in ``folder`` (either format). Returns the Adapter."""
    from methods._deltamem.attach import _ATTR, detach

    fmt = kind(folder)
    try:
        return _load_ours(model, Path(folder)) if fmt == "ours" else _load_official(model, Path(folder))
    except BaseException:
        if _ATTR in model.__dict__:
            detach(model)  # never leave a half-loaded adapter attached
        raise


def _load_ours(model: nn.Module, folder: Path):
    from safetensors.torch import load_file

    from methods._deltamem.attach import build

    meta = json.loads((folder / OURS[1]).read_text())
    if meta.get("format") != FORMAT:
        raise ConfigError(f"δ-mem adapter {folder}: format {meta.get('format')!r}, expected {FORMAT!r}")
    want, have = meta["model"], _model_info(model)
    if want != have:
        raise ConfigError(f"δ-mem adapter {folder} was trained for {want}, but the model is {have}")
    ad = build(model, Spec(**meta["spec"]))
    ad.load_state_dict(load_file(str(folder / OURS[0]), device=str(next(ad.parameters()).device)), strict=True)
    ad.info = {"adapter": str(folder), "format": "ours", **{k: meta[k] for k in ("training",) if k in meta}}
    return ad


def official_spec(cfg: dict[str, Any]) -> Spec:
    """Map an official ``delta_mem_config.json`` onto our Spec, refusing what we do not implement."""
    for f, want in _REQUIRED.items():
        got = cfg.get(f, want)
        if (list(got) if isinstance(got, (list, tuple)) else got) != want:
            raise ConfigError(f"unsupported official δ-mem config: {f}={got!r}; this implementation supports only {want!r}")
    gran = cfg.get("memory_write_granularity", "token")
    if gran not in _GRANULARITY:
        raise ConfigError(f"unsupported official δ-mem config: memory_write_granularity={gran!r}; supported: {', '.join(_GRANULARITY)}")
    heads = cfg.get("delta_heads", ["q", "k", "v", "o"])  # the official library default is all four
    heads = [h.strip() for h in heads.split(",")] if isinstance(heads, str) else list(heads)
    tm = cfg.get("target_modules", ["self_attn"])
    if list(tm) != ["self_attn"]:
        raise ConfigError(f"unsupported official δ-mem config: target_modules={tm!r}; supported: ['self_attn']")
    try:
        return Spec(rank=int(cfg.get("rank", 8)), alpha=float(cfg.get("alpha", 16.0)), num_states=int(cfg.get("num_state_heads", 1)),
                    granularity=_GRANULARITY[gran], heads=tuple(heads), layers=tuple(cfg.get("target_layers") or ()) or None,
                    beta_bias_init=float(cfg.get("beta_bias_init", -1.5)))
    except ConfigError as e:
        raise ConfigError(f"unsupported official δ-mem config: {e}") from None


def _load_official(model: nn.Module, folder: Path):
    from methods._deltamem.attach import build

    if model.config.model_type != "qwen3":
        raise ConfigError(f"official δ-mem adapters are loaded for Qwen3 backbones only; this model is {model.config.model_type!r}")
    cfg = json.loads((folder / OFFICIAL[1]).read_text())
    spec = official_spec(cfg)
    sd = torch.load(folder / OFFICIAL[0], map_location="cpu", weights_only=True)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConfigError(f"{folder / OFFICIAL[0]}: expected a plain dict of tensors")
    ad = build(model, spec)
    ours: dict[str, torch.Tensor] = {}
    seen: set[str] = set()
    for i, layer in ad.layers.items():
        pre = f"model.layers.{i}.self_attn."
        for name in _OFFICIAL_TENSORS:
            key = pre + name if pre + name in sd else pre + name + ".weight"
            if key not in sd:
                raise ConfigError(f"official δ-mem adapter {folder}: missing tensor {pre + name}")
            seen.add(key)
            t = sd[key].float()
            h = name[6] if name.startswith("delta_") else None  # delta_q_proj -> q
            if h is not None and h not in layer.delta:
                if t.abs().max() > 0:
                    raise ConfigError(f"official δ-mem adapter {folder}: {key} is non-zero but delta_heads={list(spec.heads)} excludes it")
                continue
            target = f"delta.{h}.weight" if h else (name if name == "beta_bias" else name + ".weight")
            ours[f"layers.{i}.{target}"] = t
    extra = sorted(set(sd) - seen)
    if extra:
        raise ConfigError(f"official δ-mem adapter {folder}: tensors this implementation does not use, e.g. {extra[:3]}")
    try:
        ad.load_state_dict(ours, strict=True)
    except RuntimeError as e:
        raise ConfigError(f"official δ-mem adapter {folder} does not fit this model: {e}") from None
    ad.info = {"adapter": str(folder), "format": "official", "delta_heads": list(spec.heads)}
    return ad
