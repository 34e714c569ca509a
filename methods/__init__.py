"""Memory methods: one module per method; the module name is the registry key and Hydra option."""

from __future__ import annotations

from harness.registry import Registry
from methods.base import Method

REGISTRY = Registry("method", "methods", Method)
