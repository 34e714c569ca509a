"""full_kv: the whole context stays in the model's KV cache — the accuracy reference and the cost
every memory method is trying to beat. Note that models with sliding-window layers (Gemma 3) keep
only their window in those layers; the bytes reported are what the cache really holds."""

from __future__ import annotations

from dataclasses import dataclass

from methods._lm import KVCacheMethod
from methods.base import Method, MethodConfig


@dataclass
class FullKVConfig(MethodConfig):
    pass


class FullKV(KVCacheMethod, Method):
    name = "full_kv"
    Config = FullKVConfig
