"""Byte counting from the tensors themselves, shared by the harness (model weights) and the methods
(KV caches, states, adapters, encoders)."""

from __future__ import annotations

from typing import Iterable

import torch


def storage_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    """Bytes held by the storages behind ``tensors``, each storage counted once.

    Counting storages (not ``numel``) is what keeps the number honest: a slice of a big tensor keeps
    the whole allocation alive, and that memory is really held.
    """
    seen: dict[int, int] = {}
    for t in tensors:
        if t is None or not isinstance(t, torch.Tensor) or t.numel() == 0:
            continue
        s = t.untyped_storage()
        seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
    return sum(seen.values())
