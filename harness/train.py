"""Train a δ-mem adapter on a frozen backbone: ``python -m harness.train method=deltamem model=gemma3_270m``.

One optimizer step = ``accum`` episodes. An episode (methods/_deltamem/data.py) is a write segment
([BOS] + history; writes on; gradients flow through the state over the whole segment) and a read
segment (question + answer; writes off). The backbone's KV for the history is discarded, i.e. the
state-only protocol: the read segment attends only to itself, at positions continuing after the
history, and everything about the history must come through the state. Loss = cross-entropy on
the answer tokens (``train.history_kv=true`` keeps the history's KV instead: the paper protocol)
+ ``beta_reg`` · mean over layers of (mean β − ``beta_target``)², where mean β is
the true mean over the rows of the written tokens of the *write* segment (where β acts).

Checkpoints (adapter in our safetensors format + optimizer/scheduler in ``trainer.pt``, read back
with ``torch.load(weights_only=True)``) go to ``train.ckpt_dir`` every ``ckpt_every`` steps and when
``max_minutes`` runs out; rerunning the same command resumes. The final adapter's JSON records the
data description, the command, the steps and the losses.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.registry import ConfigError, build_config, check


@dataclass
class TrainConfig:
    steps: int = 600
    accum: int = 1
    lr: float = 1e-3
    lr_in: float = 1e-4
    weight_decay: float = 0.0
    warmup_frac: float = 0.1
    min_lr_frac: float = 0.1
    grad_clip: float = 1.0
    lengths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    beta_reg: float = 0.01
    beta_target: float = 0.05
    history_kv: bool = False  # False: state-only (history KV discarded); True: paper protocol (history kept in KV)
    bf16: bool = False
    eval_every: int = 100
    eval_episodes: int = 24
    eval_length: int = 256
    ckpt_every: int = 25
    ckpt_dir: str = "runs/train/deltamem"
    out: str | None = None
    max_minutes: float | None = None
    seed: int = 0
    threads: int | None = None  # torch intra-op threads (1 is fastest on a crowded CPU)
    progress: bool = True
    eval_only: bool = False  # evaluate method.adapter (a folder, or null = untrained) on the held-out set and exit

    def __post_init__(self) -> None:
        self.lengths = list(self.lengths)
        for f in ("steps", "accum", "eval_every", "eval_episodes", "eval_length", "ckpt_every"):
            v = getattr(self, f)
            check(isinstance(v, int) and v > 0, f"train.{f}", "a positive integer", v)
        check(len(self.lengths) > 0 and all(isinstance(n, int) and n > 0 for n in self.lengths), "train.lengths", "a list of positive integers", self.lengths)
        check(0 <= self.warmup_frac < 1, "train.warmup_frac", "a number in [0, 1)", self.warmup_frac)


def length_at(tc: TrainConfig, step: int) -> int:
    """Curriculum: equal shares of the steps per write length, shortest first."""
    return tc.lengths[min(step * len(tc.lengths) // tc.steps, len(tc.lengths) - 1)]


def lr_factor(tc: TrainConfig, step: int) -> float:
    warm = int(tc.warmup_frac * tc.steps)
    if step < warm:
        return (step + 1) / warm
    p = (step - warm) / max(1, tc.steps - warm)
    return tc.min_lr_frac + (1 - tc.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


def encode(tok: Any, ep: Any) -> tuple[list[int], list[int], list[int]]:
    ids = lambda s: list(tok(s, add_special_tokens=False).input_ids)  # noqa: E731
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    return bos + ids(ep.write), ids(ep.read), ids(ep.answer)


def episode_loss(model: Any, ad: Any, tok: Any, ep: Any, tc: TrainConfig) -> dict[str, torch.Tensor]:
    """Write the history, then read the question; CE on the answer tokens (+ the β regulariser)."""
    w, r, a = encode(tok, ep)
    dev = next(model.parameters()).device
    ad.reset()
    ad.io.beta, ad.io.collect_beta, ad.default_write = {}, True, True
    ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if tc.bf16 else torch.autocast(dev.type, enabled=False)
    cache = None
    if tc.history_kv:  # paper protocol: the read segment also attends to the history's KV
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
    with ctx:
        model(input_ids=torch.tensor([w], device=dev), cache=cache, use_cache=cache is not None, logits_to_keep=1)  # writes
        ad.io.collect_beta, ad.default_write = False, False
        x = torch.tensor([r + a], device=dev)
        pos = torch.arange(len(w), len(w) + x.shape[1], device=dev)[None]  # positions continue after the history
        logits = model(input_ids=x, position_ids=pos, cache=cache, use_cache=cache is not None,
                       logits_to_keep=len(a) + 1).logits[0, :-1].float()  # [A, V]
    target = torch.tensor(a, device=dev)
    ce = F.cross_entropy(logits, target)
    betas = [s / c for s, c in ad.io.beta.values() if int(c) > 0]
    mean_beta = torch.stack([torch.as_tensor(b) for b in betas]) if betas else torch.zeros(1, device=dev)
    reg = ((mean_beta - tc.beta_target) ** 2).mean()
    right = logits.argmax(-1) == target
    digit = torch.tensor([tok.decode([t]).strip().isdigit() for t in a], device=dev)
    return {"loss": ce + tc.beta_reg * reg, "ce": ce, "beta": mean_beta.mean(), "exact": right.all().float(),
            "digit_right": (right & digit).sum(), "digits": digit.sum()}


@torch.no_grad()
def evaluate(model: Any, ad: Any, tok: Any, tc: TrainConfig, mismatched: bool = False) -> dict[str, float]:
    """Held-out episodes (split=heldout, fixed length): answer CE, per-digit and exact accuracy.

    ``mismatched``: a control that writes the history of episode i+1 before asking the question of
    episode i; whatever the adapter gains there is answer format, not memory."""
    from methods._deltamem.data import Episode, episode

    ce = ex = dr = dn = 0.0
    n = tc.eval_episodes
    for i in range(n):
        ep = episode(tok, "heldout", i, tc.eval_length, seed=tc.seed)
        if mismatched:
            other = episode(tok, "heldout", (i + 1) % n, tc.eval_length, seed=tc.seed)
            ep = Episode(write=other.write, read=ep.read, answer=ep.answer, kind=ep.kind, key=ep.key)
        m = episode_loss(model, ad, tok, ep, tc)
        ce, ex, dr, dn = ce + float(m["ce"]), ex + float(m["exact"]), dr + float(m["digit_right"]), dn + float(m["digits"])
    ad.reset()
    return {"answer_ce": ce / n, "per_digit": dr / max(dn, 1), "exact": ex / n, "episodes": n, "length": tc.eval_length}


def _optimizer(ad: Any, tc: TrainConfig) -> torch.optim.Optimizer:
    inp = [p for n, p in ad.named_parameters() if n.split(".")[-2] in ("memory_q_proj", "memory_k_proj", "memory_v_proj", "beta_proj")]
    ids = {id(p) for p in inp}
    rest = [p for p in ad.parameters() if id(p) not in ids]
    return torch.optim.AdamW([{"params": inp, "lr": tc.lr_in}, {"params": rest, "lr": tc.lr}], weight_decay=tc.weight_decay)


def train(lm: Any, method_cfg: Any, tc: TrainConfig, command: str = "") -> dict[str, Any]:
    """Train (or resume) and write the final adapter; returns the record stored in its JSON."""
    from methods._deltamem import adapter as files
    from methods._deltamem.attach import build

    model, tok = lm.model, lm.tokenizer
    ckpt = Path(tc.ckpt_dir)
    state: dict[str, Any] = {"step": 0, "losses": [], "untrained": None, "wall_s": 0.0}
    if (ckpt / "adapter" / files.OURS[1]).exists():
        ad = files.load(model, ckpt / "adapter")
        saved = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=True)
        state.update(saved["state"])
        print(f"[train] resuming from {ckpt} at step {state['step']}", file=sys.stderr)
    else:
        saved = None
        ad = build(model, method_cfg.spec(), seed=tc.seed)
    try:
        return _loop(model, tok, ad, tc, saved, state, ckpt, command, lm.cfg.name)
    finally:
        from methods._deltamem import detach

        detach(model)  # the model is bare again; the adapter lives on in its files


def _loop(model: Any, tok: Any, ad: Any, tc: TrainConfig, saved: Any, state: dict, ckpt: Path, command: str, model_name: str) -> dict[str, Any]:
    from methods._deltamem import adapter as files
    from methods._deltamem.data import describe, episode

    for p in ad.parameters():
        p.requires_grad_(True)
    opt = _optimizer(ad, tc)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(tc, s))
    if saved is not None:
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
    if state["untrained"] is None:
        state["untrained"] = evaluate(model, ad, tok, tc)
        print(f"[train] held-out before training: {state['untrained']}", file=sys.stderr)

    def checkpoint() -> None:
        files.save(model, ckpt / "adapter")
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "state": state}, ckpt / "trainer.pt")

    from tqdm import tqdm

    bar = tqdm(total=tc.steps, initial=state["step"], desc="δ-mem train", file=sys.stderr, disable=not tc.progress, dynamic_ncols=True)
    t0, wall0, ema = time.time(), state["wall_s"], None
    heldout = state.get("heldout")
    while state["step"] < tc.steps:
        step = state["step"]
        opt.zero_grad(set_to_none=True)
        n = length_at(tc, step)
        for j in range(tc.accum):
            m = episode_loss(model, ad, tok, episode(tok, "train", step * tc.accum + j, n, seed=tc.seed), tc)
            (m["loss"] / tc.accum).backward()
        torch.nn.utils.clip_grad_norm_(ad.parameters(), tc.grad_clip)
        opt.step()
        sched.step()
        ad.reset()  # drop the autograd graph held by the states
        ce = float(m["ce"].detach())
        ema = ce if ema is None else 0.95 * ema + 0.05 * ce
        state["losses"].append(round(ce, 4))
        state["step"] = step + 1
        state["wall_s"] = wall0 + time.time() - t0
        bar.update(1)
        bar.set_postfix(ce=f"{ema:.3f}", beta=f"{float(m['beta'].detach()):.3f}", len=n)
        if state["step"] % tc.eval_every == 0 or state["step"] == tc.steps:
            heldout = state["heldout"] = {**evaluate(model, ad, tok, tc), "step": state["step"]}
            bar.write(f"[train] step {state['step']}: held-out {heldout}")
        out_of_time = tc.max_minutes is not None and time.time() - t0 > 60 * tc.max_minutes
        if state["step"] % tc.ckpt_every == 0 or state["step"] == tc.steps or out_of_time:
            checkpoint()
        if out_of_time and state["step"] < tc.steps:
            bar.close()
            print(f"[train] max_minutes reached at step {state['step']}; checkpoint in {ckpt}; rerun to resume", file=sys.stderr)
            return {"finished": False, "step": state["step"]}
    bar.close()
    if heldout is None or heldout.get("step") != state["step"]:  # e.g. resumed with a smaller train.steps
        heldout = state["heldout"] = {**evaluate(model, ad, tok, tc), "step": state["step"]}
    last = state["losses"][-50:]
    record = {
        "command": command, "data": describe(), "train_config": asdict(tc), "steps": state["step"],
        "wall_minutes": round(state["wall_s"] / 60, 1), "final_train_ce_mean_last50": sum(last) / max(len(last), 1),
        "heldout_untrained": state["untrained"], "heldout_trained": heldout,
        "protocol": ("context + state (history kept in KV)" if tc.history_kv else "state-only (history KV discarded)")
        + "; write segment [BOS]+history, read segment question+answer",
    }
    out = Path(tc.out) if tc.out else Path("adapters") / f"{model_name}_deltamem"
    files.save(model, out, extra={"training": record})
    print(f"[train] adapter written to {out}", file=sys.stderr)
    return {"finished": True, **record}


def run(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from harness.models import ModelConfig, load
    from methods import REGISTRY as METHODS

    plain = lambda n: OmegaConf.to_container(n, resolve=True) if n is not None else {}  # noqa: E731
    mvals = plain(cfg.method)
    if mvals.pop("name", None) != "deltamem":
        raise ConfigError("harness.train trains method=deltamem only")
    mcfg = build_config(METHODS.get("deltamem").Config, mvals, "method")
    tc = build_config(TrainConfig, plain(cfg.get("train")), "train")
    torch.manual_seed(tc.seed)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    lm = load(build_config(ModelConfig, plain(cfg.model), "model"))
    if tc.eval_only:
        return evaluate_adapter(lm, mcfg, tc)
    return train(lm, mcfg, tc, command="python -m harness.train " + " ".join(sys.argv[1:]))


def evaluate_adapter(lm: Any, mcfg: Any, tc: TrainConfig) -> dict[str, Any]:
    """Held-out numbers for an adapter folder (or a fresh init), with the mismatched-history control."""
    import json

    from methods._deltamem import attach, detach
    from methods._deltamem.attach import build

    ad = attach(lm.model, adapter=mcfg.adapter) if mcfg.adapter else build(lm.model, mcfg.spec(), seed=tc.seed)
    try:
        out = {"adapter": mcfg.adapter, "matched": evaluate(lm.model, ad, lm.tokenizer, tc),
               "mismatched_history": evaluate(lm.model, ad, lm.tokenizer, tc, mismatched=True)}
    finally:
        detach(lm.model)
    print(json.dumps(out, indent=2))
    return out


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
