"""The δ-mem trainer (``python -m harness.train method=deltamem ...`` finds it through ``DeltaMem.trainer()``):
set-up and resume, the held-out evaluation of an adapter folder, and the ``Trainer`` hook. Settings,
losses and single steps are in ``steps.py``; the optimisation loop in ``loop.py``."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from methods._deltamem.loop import loop
from methods._deltamem.steps import Stage, TrainConfig, stage_at

__all__ = ["Stage", "TrainConfig", "Trainer", "evaluate_adapter", "stage_at", "train"]


def train(lm: Any, method_cfg: Any, tc: TrainConfig, command: str = "") -> dict[str, Any]:
    """Train (or resume) and write the final adapter; returns the record stored in its JSON."""
    from methods._deltamem import adapter as files
    from methods._deltamem.attach import build, detach

    model, tok = lm.model, lm.tokenizer
    ckpt = Path(tc.ckpt_dir)
    state: dict[str, Any] = {"step": 0, "losses": [], "curve": [], "wall_s": 0.0, "cpu_s": 0.0}
    saved = None
    if (ckpt / "adapter" / files.OURS[1]).exists():
        ad = files.load(model, ckpt / "adapter")
        saved = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=True)
        state.update(saved["state"])
        print(f"[train] resuming from {ckpt} at step {state['step']}", file=sys.stderr)
    else:
        spec = method_cfg.spec()
        if tc.beta_bias_init is not None:
            spec = replace(spec, beta_bias_init=float(tc.beta_bias_init))
        ad = build(model, spec, seed=tc.seed)
    try:
        return loop(model, tok, ad, tc, saved, state, ckpt, command, lm.cfg.name)
    finally:
        detach(model)  # the model is bare again; the adapter lives on in its files


def evaluate_adapter(lm: Any, mcfg: Any, tc: TrainConfig) -> dict[str, Any]:
    """Held-out table for an adapter folder (or a fresh init): true / mismatched / no history per setting."""
    import json

    from methods._deltamem import attach
    from methods._deltamem.attach import build, detach
    from methods._deltamem.heldout import evaluate

    ad = attach(lm.model, adapter=mcfg.adapter) if mcfg.adapter else build(lm.model, mcfg.spec(), seed=tc.seed)
    try:
        rows = [evaluate(lm.model, ad, lm.tokenizer, s, tc.eval_episodes, seed=tc.seed, history_kv=tc.history_kv)
                for s in (tc.eval_list or [tc.eval_setting])]
    finally:
        detach(lm.model)
    out = {"adapter": mcfg.adapter, "split": "heldout", "rows": rows}
    print(json.dumps(out, indent=2))
    if tc.eval_json:
        from harness.io import write_json

        write_json(Path(tc.eval_json), out)
    return out


class Trainer:
    """What ``harness.train`` needs from a trainable method: its config class and ``run``."""

    Config = TrainConfig

    @staticmethod
    def run(lm: Any, method_cfg: Any, tc: TrainConfig, command: str) -> dict[str, Any]:
        return evaluate_adapter(lm, method_cfg, tc) if tc.eval_only else train(lm, method_cfg, tc, command)
