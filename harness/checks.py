"""Checks that need no model, shared by one run (``harness.launch``) and a sweep's fail-fast pass
(``harness.sweep``); kept apart from both so neither imports the other."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from omegaconf import DictConfig

from harness.registry import ConfigError
from harness.settings import TopConfig


def grid_lengths(task_cfg: Any) -> list[int]:
    """The context lengths (tokens) a task config asks for (``context_lengths`` or ``context_length``);
    empty for a task whose lengths are known only once its data is tokenised (jsonl)."""
    lengths = getattr(task_cfg, "context_lengths", None)
    if lengths is None:
        one = getattr(task_cfg, "context_length", None)
        lengths = [] if one is None else [one]
    return [int(n) for n in lengths]


def validate(cfg: DictConfig) -> dict:
    """All checks that need no model: the method/task/model/run groups, the task's inputs (a task
    reads its data files when constructed, so a missing file is caught here), the method's settings
    against every context length of the task (e.g. a KV window not below one) and the launch keys.
    The tokenised context is checked again inside the run, where its exact length is known."""
    from harness.run import build

    _, (method_cls, method_cfg), (task_cls, task_cfg), run = build(cfg)
    task_cls(task_cfg)
    problems = [p for n in grid_lengths(task_cfg) if (p := method_cls.context_problem(method_cfg, n))]
    if problems:
        raise ConfigError("\n  ".join(problems))  # every length of this run in one message
    top = TopConfig(**{f.name: cfg[f.name] for f in fields(TopConfig) if f.name in cfg})
    return {"launcher": top.launcher, "force": top.force, "timeout_s": run["timeout_s"]}
