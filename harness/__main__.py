"""``python -m harness method=<name> task=<name> [model=<name>] [key=value ...]`` (Hydra)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from harness.registry import ConfigError, suggest

FAILURES: list[str] = []


def _config_names(group: str) -> list[str]:
    from importlib.resources import files

    return sorted(p.name[:-5] for p in files("configs").joinpath(group).iterdir() if p.name.endswith(".yaml"))


def precheck(argv: list[str]) -> None:
    """Reject unknown method/task/model names before Hydra composes anything ("did you mean")."""
    from methods import REGISTRY as METHODS
    from tasks import REGISTRY as TASKS

    valid = {"method": METHODS.names(), "task": TASKS.names(), "model": _config_names("model"), "experiment": _config_names("experiment")}
    for arg in argv:
        m = re.fullmatch(r"\+?(method|task|model|experiment)=(.+)", arg)
        if not m:
            continue
        group, value = m.groups()
        for name in re.sub(r"^(choice|range)\((.*)\)$", r"\2", value).split(","):
            if name.strip() not in valid[group]:
                raise ConfigError(suggest(group, name.strip(), valid[group]))


@hydra.main(version_base="1.3", config_path="pkg://configs", config_name="config")
def app(cfg: DictConfig) -> None:
    from harness.run import execute
    from harness.summary import console_table

    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = execute(cfg, out)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        FAILURES.append(str(e))
        return
    print(console_table(summary))
    print(f"results: {out}")
    if summary["status"] != "ok":
        print(f"run {summary['status']}: {summary['error']['type']}: {summary['error']['message']}", file=sys.stderr)
        FAILURES.append(str(out))


def main() -> None:
    try:
        precheck(sys.argv[1:])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    app()
    if FAILURES:
        sys.exit(1)


if __name__ == "__main__":
    main()
