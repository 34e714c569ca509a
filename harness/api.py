"""Use the harness from Python: compose a config like the CLI does, run it into a folder.

    from harness.api import compose, run
    summary = run(["method=window", "task=passkey", "method.window=256"], out="runs/mine")
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The composed top-level config for ``overrides`` (same syntax as the command line)."""
    from hydra import compose as _compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="configs", version_base="1.3"):
        return _compose(config_name="config", overrides=list(overrides))


def run(overrides: Sequence[str] = (), out: str | Path = "runs/api") -> dict:
    """Run one configuration in this process and return its summary (also written to ``out``)."""
    from harness.run import execute

    return execute(compose(overrides), Path(out))
