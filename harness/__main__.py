"""``python -m harness method=<name> task=<name> [model=<name>] [key=value ...]`` (Hydra).

``-m`` / an experiment preset with ``hydra.mode: MULTIRUN`` runs a sweep; see docs/sweeps.md.
The task function lives in ``harness.launch`` (an importable module) so that launchers which pickle
it for other processes (submitit) can import it there.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import hydra

from harness.launch import job
from harness.registry import ConfigError, config_files, suggest
from harness.sweep import exit_code


def precheck(argv: list[str]) -> None:
    """Reject unknown method/task/model names before Hydra composes anything ("did you mean"), and
    KV-quantization settings given to a method without them (Hydra would only say "not in struct")."""
    from methods import REGISTRY as METHODS
    from tasks import REGISTRY as TASKS

    valid = {"method": METHODS.names(), "task": TASKS.names(), "model": sorted(config_files("model")), "experiment": sorted(config_files("experiment"))}
    for arg in argv:
        m = re.fullmatch(r"\+?(method|task|model|experiment)=(.+)", arg)
        if not m:
            continue
        group, value = m.groups()
        for name in re.sub(r"^(choice|range)\((.*)\)$", r"\2", value).split(","):
            if name.strip() not in valid[group]:
                raise ConfigError(suggest(group, name.strip(), valid[group]))
    _precheck_kv(argv, METHODS)


def _precheck_kv(argv: list[str], methods: Any) -> None:
    from dataclasses import fields

    from methods.base import KV_FIELDS, kv_unsupported

    chosen = [m.group(1) for a in argv if (m := re.fullmatch(r"\+?method=(.+)", a))]
    if not chosen and any(re.match(r"\+?experiment=", a) for a in argv):
        return  # a preset may choose the method; the run's own validation covers it
    names = [n.strip() for c in chosen for n in re.sub(r"^(choice|range)\((.*)\)$", r"\2", c).split(",")] or ["full_kv"]
    for arg in argv:
        m = re.fullmatch(r"\+{0,2}method\.(\w+)=.*", arg)
        if m and m.group(1) in KV_FIELDS:
            for name in names:
                if m.group(1) not in {f.name for f in fields(methods.get(name).Config)}:
                    raise ConfigError(kv_unsupported(name, m.group(1)))


app = hydra.main(version_base="1.3", config_path="pkg://configs", config_name="config")(job)


def main() -> None:
    """Exit code: 0 all runs ok or skipped, 1 any run failed/oom/timed out, 2 a config error."""
    try:
        precheck(sys.argv[1:])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    app()
    sys.exit(exit_code())


if __name__ == "__main__":
    main()
