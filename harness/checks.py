"""Checks that need no model, shared by one run (``harness.launch``) and a sweep's fail-fast pass
(``harness.sweep``); kept apart from both so neither imports the other."""

from __future__ import annotations

from dataclasses import fields

from omegaconf import DictConfig

from harness.settings import TopConfig


def validate(cfg: DictConfig) -> dict:
    """All checks that need no model: the method/task/model/run groups, the task's inputs (a task
    reads its data files when constructed, so a missing file is caught here) and the launch keys."""
    from harness.run import build

    _, _, (task_cls, task_cfg), run = build(cfg)
    task_cls(task_cfg)
    top = TopConfig(**{f.name: cfg[f.name] for f in fields(TopConfig) if f.name in cfg})
    return {"launcher": top.launcher, "force": top.force, "timeout_s": run["timeout_s"]}
