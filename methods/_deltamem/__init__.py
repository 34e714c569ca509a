"""δ-mem internals: per-layer memory (layer.py), hook-based attachment (attach.py), adapter files
(adapter.py), training episodes (data.py). The public API is re-exported by ``methods.deltamem``;
the mechanism is described in docs/deltamem.md.

``attach`` lives here, above both ``attach.py`` and ``adapter.py``: loading an adapter file needs
``attach.build``, so ``attach.py`` itself must not import ``adapter.py`` (no import cycle).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from methods._deltamem.adapter import load as _load
from methods._deltamem.attach import _ATTR, Adapter, build, detach, get_adapter, install, queue_ids, read_state, reset_state, set_default_write
from methods._deltamem.layer import Spec

__all__ = ["attach", "detach", "get_adapter", "install", "queue_ids", "read_state", "reset_state", "set_default_write", "Spec"]


def attach(model: nn.Module, rank: int = 8, alpha: float = 16.0, num_states: int = 1, granularity: str = "token",
           heads: tuple[str, ...] = ("q", "o"), layers: tuple[int, ...] | None = None, adapter: str | Path | None = None,
           seed: int = 0) -> Adapter:
    """Attach δ-mem to ``model`` (fresh init, or from ``adapter``: our format or the official one; the
    adapter's own config then wins over the keyword arguments). Returns the Adapter."""
    if _ATTR in model.__dict__:
        raise ValueError("δ-mem is already attached to this model; detach(model) first")
    if adapter is not None:
        return _load(model, adapter)
    spec = Spec(rank=rank, alpha=alpha, num_states=num_states, granularity=granularity, heads=tuple(heads), layers=layers)
    return build(model, spec, seed=seed)
