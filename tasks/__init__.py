"""Recall tasks: one module per task; the module name is the registry key and Hydra option."""

from __future__ import annotations

from harness.registry import Registry
from tasks.base import Task

REGISTRY = Registry("task", "tasks", Task)
