"""The optimisation loop of the δ-mem trainer (see ``train.py``): steps, learning curve, checkpoints."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from methods._deltamem.episodes import digit_ids, make_head
from methods._deltamem.steps import TrainConfig, _optimizer, _train_episode, curve_point, lr_factor, stage_at


def loop(model: Any, tok: Any, ad: Any, tc: TrainConfig, saved: Any, state: dict, ckpt: Path, command: str, model_name: str) -> dict[str, Any]:
    from methods._deltamem import adapter as files
    from methods._deltamem.data import describe

    for p in ad.parameters():
        p.requires_grad_(True)
    dv = digit_ids(tok)
    head = make_head(ad)
    opt = _optimizer(ad, head, tc)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(tc, s))
    if saved is not None:
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        head.load_state_dict(saved["head"])
    if not state["curve"]:
        state["curve"].append(curve_point(model, ad, tok, tc, 0, head, dv))
        print(f"[train] held-out before training: {state['curve'][-1]}", file=sys.stderr)

    def checkpoint() -> None:
        files.save(model, ckpt / "adapter")
        tmp = ckpt / "trainer.pt.tmp"
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "head": head.state_dict(), "state": state}, tmp)
        tmp.replace(ckpt / "trainer.pt")

    from tqdm import tqdm

    bar = tqdm(total=tc.steps, initial=state["step"], desc="δ-mem train", file=sys.stderr, disable=not tc.progress, dynamic_ncols=True)
    t0, c0, wall0, cpu0, ema, aema = time.time(), time.process_time(), state["wall_s"], state["cpu_s"], None, None
    while state["step"] < tc.steps:
        step = state["step"]
        opt.zero_grad(set_to_none=True)
        for j in range(tc.accum):
            m = _train_episode(model, ad, tok, tc, step, j, head, dv)
            (m["loss"] / tc.accum).backward()
        torch.nn.utils.clip_grad_norm_([*ad.parameters(), *head.parameters()], tc.grad_clip)
        opt.step()
        sched.step()
        ad.reset()  # drop the autograd graph held by the states
        ce = float(m["ce"].detach())
        ema = ce if ema is None else 0.95 * ema + 0.05 * ce
        if "aux_ce" in m:
            a = float(m["aux_ce"].detach())
            aema = a if aema is None else 0.95 * aema + 0.05 * a
        state["losses"].append([round(ce, 4), None if "aux_ce" not in m else round(float(m["aux_ce"].detach()), 4)])
        state["step"] = step + 1
        state["wall_s"], state["cpu_s"] = wall0 + time.time() - t0, cpu0 + time.process_time() - c0
        bar.update(1)
        bar.set_postfix(ce=f"{ema:.3f}", aux=f"{aema:.3f}" if aema is not None else "-", beta=f"{float(m['beta_layers'].detach().mean()):.3f}", len=m["tokens"])
        if state["step"] % tc.eval_every == 0 or state["step"] == tc.steps:
            state["curve"].append(curve_point(model, ad, tok, tc, state["step"], head, dv))
            bar.write(f"[train] step {state['step']} ({stage_at(tc, step).label()}): held-out {state['curve'][-1]}")
        out_of_time = tc.max_minutes is not None and time.time() - t0 > 60 * tc.max_minutes
        if state["step"] % tc.ckpt_every == 0 or state["step"] == tc.steps or out_of_time:
            checkpoint()
        if out_of_time and state["step"] < tc.steps:
            bar.close()
            print(f"[train] max_minutes reached at step {state['step']}; checkpoint in {ckpt}; rerun to resume", file=sys.stderr)
            return {"finished": False, "step": state["step"]}
    bar.close()
    if state["curve"][-1]["step"] != state["step"]:  # e.g. resumed with a smaller train.steps
        state["curve"].append(curve_point(model, ad, tok, tc, state["step"], head, dv))
    last = [x[0] for x in state["losses"][-50:]]
    record = {
        "command": command, "data": describe(), "train_config": tc.record(), "steps": state["step"],
        "wall_minutes": round(state["wall_s"] / 60, 1), "cpu_minutes": round(state["cpu_s"] / 60, 1),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "final_train_ce_mean_last50": sum(last) / max(len(last), 1),
        "curve_setting": tc.eval_setting.label(), "curve": state["curve"],
        "heldout_untrained": state["curve"][0], "heldout_trained": state["curve"][-1],
        "protocol": ("context + state (history kept in KV)" if tc.history_kv else "state-only (history KV discarded)")
        + "; write segment [BOS]+history, read segment question+answer",
    }
    out = Path(tc.out) if tc.out else Path("adapters") / f"{model_name}_deltamem"
    files.save(model, out, extra={"training": record})
    print(f"[train] adapter written to {out}", file=sys.stderr)
    return {"finished": True, **record}
