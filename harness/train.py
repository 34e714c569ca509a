"""Train a method's learned parts on a frozen backbone: ``python -m harness.train method=<name> model=<model> train.<field>=...``.

Generic: the method class says whether it can be trained (``Method.trainer()`` returns an object
with a ``Config`` dataclass for the ``train`` group and ``run(lm, method_cfg, train_cfg, command)``);
everything method-specific (data, losses, checkpoints, evaluation) lives with the method. Today
``deltamem`` is the trainable method (``configs/train.yaml`` holds its defaults).
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from harness.registry import ConfigError, build_config


def trainable() -> list[str]:
    from methods import REGISTRY as METHODS

    return [n for n in METHODS.names() if METHODS.get(n).trainer() is not None]


def run(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from harness.models import ModelConfig, load
    from methods import REGISTRY as METHODS

    plain = lambda n: OmegaConf.to_container(n, resolve=True) if n is not None else {}  # noqa: E731
    mvals = plain(cfg.method)
    name = mvals.pop("name", None)
    cls = METHODS.get(str(name))
    trainer = cls.trainer()
    if trainer is None:
        raise ConfigError(f"invalid value for 'method': {name!r} has nothing to train; trainable methods: {', '.join(trainable())}")
    mcfg = build_config(cls.Config, mvals, "method")
    tc = build_config(trainer.Config, plain(cfg.get("train")), "train")
    torch.manual_seed(getattr(tc, "seed", 0))
    if getattr(tc, "threads", None):
        torch.set_num_threads(tc.threads)
    lm = load(build_config(ModelConfig, plain(cfg.model), "model"))
    return trainer.run(lm, mcfg, tc, "python -m harness.train " + " ".join(sys.argv[1:]))


def main() -> None:
    import hydra

    @hydra.main(version_base="1.3", config_path="pkg://configs", config_name="train")
    def app(cfg: Any) -> None:
        try:
            run(cfg)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    app()


if __name__ == "__main__":
    main()
