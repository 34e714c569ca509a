"""δ-mem internals: per-layer memory (layer.py), hook-based attachment (attach.py), adapter files
(adapter.py), training episodes (data.py). The public API is re-exported by ``methods.deltamem``."""

from methods._deltamem.attach import attach, detach, get_adapter, install, queue_ids, read_state, reset_state, set_default_write
from methods._deltamem.layer import Spec

__all__ = ["attach", "detach", "get_adapter", "install", "queue_ids", "read_state", "reset_state", "set_default_write", "Spec"]
