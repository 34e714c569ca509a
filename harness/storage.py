"""Byte counting from the tensors themselves, shared by the harness (model weights) and the methods
(KV caches, states, adapters, encoders)."""

from __future__ import annotations

from typing import Iterable, Iterator

import torch


def flat_tensors(tensors: Iterable[torch.Tensor | None]) -> Iterator[torch.Tensor]:
    """Plain tensors behind ``tensors``: a tensor subclass that wraps others (torchao's quantized
    weights hold packed data, scales and zero points) is replaced by its inner tensors, recursively."""
    for t in tensors:
        if t is None or not isinstance(t, torch.Tensor):
            continue
        if isinstance(t, torch.nn.Parameter):
            t = t.data  # a Parameter around a subclass: look at what it wraps
        flatten = getattr(type(t), "__tensor_flatten__", None)
        if flatten is not None and type(t) is not torch.Tensor:
            names, _ = t.__tensor_flatten__()
            yield from flat_tensors(getattr(t, n) for n in names)
        else:
            yield t


def storage_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    """Bytes held by the storages behind ``tensors``, each storage counted once.

    Counting storages (not ``numel``) is what keeps the number honest: a slice of a big tensor keeps
    the whole allocation alive, and that memory is really held. Quantized tensor subclasses count
    by their inner storages (see ``flat_tensors``).
    """
    seen: dict[int, int] = {}
    for t in flat_tensors(tensors):
        if t.numel() == 0:
            continue
        s = t.untyped_storage()
        seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
    return sum(seen.values())
