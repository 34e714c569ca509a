"""The δ-mem trainer's settings and single steps (``train.py`` sets up and resumes, ``loop.py`` runs the steps).

One optimizer step = ``accum`` episodes (``episodes.py``). Loss = answer cross-entropy
+ ``beta_reg`` · mean over layers of (mean β over the written tokens − ``beta_target``)²
+ ``aux`` · the cross-entropy of a read-out probe (LayerNorm + linear over the reads r_t = S q_t of
all layers at the positions that predict the answer's digits, trained jointly, never shipped): it
gives the memory projections W_q/W_k/W_v/W_β a gradient that does not pass through the frozen model.

Curriculum: ``stages`` (each until a step, with its own write lengths, key lengths, fact place and
kind); without stages, equal shares of the steps per ``lengths`` on the original episodes.
Checkpoints (adapter + optimizer/scheduler/probe in ``trainer.pt``, read back with
``torch.load(weights_only=True)``) go to ``ckpt_dir`` every ``ckpt_every`` steps and when
``max_minutes`` runs out; rerunning the same command resumes. Every ``eval_every`` steps the
held-out true and mismatched-history per-digit accuracy and β on filler vs fact tokens are appended to
the learning curve, which the final adapter's JSON keeps with the command, steps and CPU time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from harness.registry import ConfigError, build_config, check
from methods._deltamem.episodes import Setting, encode, run_episode


@dataclass
class Stage(Setting):
    until: int | None = None  # the stage covers steps up to this one (exclusive); None: to the end
    tokens_choices: list[int] = field(default_factory=list)  # write lengths drawn per episode (default: [tokens])


@dataclass
class TrainConfig:
    steps: int = 600
    accum: int = 1  # forward/backward passes per optimizer step
    batch: int = 1  # episodes per forward (left-padded); one step = accum × batch episodes
    lr: float = 1e-3  # output side: W_q^Δ, W_o^Δ, b_β
    lr_in: float = 1e-4  # input side: W_q, W_k, W_v, W_β
    weight_decay: float = 0.0
    warmup_frac: float = 0.1
    min_lr_frac: float = 0.1
    grad_clip: float = 1.0
    lengths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    stages: list[dict] = field(default_factory=list)  # curriculum; overrides lengths
    beta_reg: float = 0.01
    beta_target: float = 0.05
    beta_bias_init: float | None = None  # None: the Spec default (-1.5)
    beta_sel: float = 0.0  # weight of a selectivity penalty: mean β (over layers) on filler tokens of the write segment
    aux: float = 0.0  # weight of the read-out probe loss (0: off)
    aux_lr: float = 1e-3
    history_kv: bool = False  # False: state-only (history KV discarded); True: paper protocol
    bf16: bool = False
    eval_every: int = 100
    eval_episodes: int = 24
    eval_length: int = 256
    eval: dict = field(default_factory=dict)  # learning-curve setting (Setting fields); default: eval_length, original episodes
    ckpt_every: int = 25
    ckpt_dir: str = "runs/train/deltamem"
    out: str | None = None
    max_minutes: float | None = None
    seed: int = 0
    threads: int | None = None  # torch intra-op threads (1 is fastest on a crowded CPU)
    progress: bool = True
    eval_only: bool = False  # evaluate method.adapter on the held-out sets (eval_sets) and exit
    eval_sets: list[dict] = field(default_factory=list)  # settings for eval_only; default: [eval]
    eval_json: str | None = None  # eval_only: also write the results here (JSON)

    def __post_init__(self) -> None:
        self.lengths = list(self.lengths)
        for f in ("steps", "accum", "batch", "eval_every", "eval_episodes", "eval_length", "ckpt_every"):
            v = getattr(self, f)
            check(isinstance(v, int) and v > 0, f"train.{f}", "a positive integer", v)
        check(len(self.lengths) > 0 and all(isinstance(n, int) and n > 0 for n in self.lengths), "train.lengths", "a list of positive integers", self.lengths)
        check(0 <= self.warmup_frac < 1, "train.warmup_frac", "a number in [0, 1)", self.warmup_frac)
        check(self.aux >= 0, "train.aux", "a number >= 0", self.aux)
        self.stage_list = [_setting(Stage, s, f"train.stages[{i}]") for i, s in enumerate(self.stages)]
        self.eval_setting = _setting(Setting, {"tokens": self.eval_length, **dict(self.eval)}, "train.eval")
        self.eval_list = [_setting(Setting, s, f"train.eval_sets[{i}]") for i, s in enumerate(self.eval_sets)]

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()}


def _setting(cls: type, values: Any, where: str) -> Any:
    try:
        return build_config(cls, dict(values), where)
    except ConfigError as e:  # the Setting checks name the bare field; say which entry it is
        raise ConfigError(str(e).replace("'", f"'{where}.", 1) if where not in str(e) else str(e)) from None


def stage_at(tc: TrainConfig, step: int) -> Stage:
    """The curriculum stage of ``step``: the first whose ``until`` lies beyond it; without stages,
    equal shares of the steps per write length, shortest first, on the original episodes."""
    if not tc.stage_list:
        return Stage(tokens=tc.lengths[min(step * len(tc.lengths) // tc.steps, len(tc.lengths) - 1)])
    for s in tc.stage_list:
        if s.until is None or step < s.until:
            return s
    return tc.stage_list[-1]


def lr_factor(tc: TrainConfig, step: int) -> float:
    warm = int(tc.warmup_frac * tc.steps)
    if step < warm:
        return (step + 1) / warm
    p = (step - warm) / max(1, tc.steps - warm)
    return tc.min_lr_frac + (1 - tc.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


def _optimizer(ad: Any, head: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    inp = [p for n, p in ad.named_parameters() if n.split(".")[-2] in ("memory_q_proj", "memory_k_proj", "memory_v_proj", "beta_proj")]
    ids = {id(p) for p in inp}
    rest = [p for p in ad.parameters() if id(p) not in ids]
    return torch.optim.AdamW([{"params": inp, "lr": tc.lr_in}, {"params": rest, "lr": tc.lr},
                              {"params": list(head.parameters()), "lr": tc.aux_lr}], weight_decay=tc.weight_decay)


def _train_episode(model: Any, ad: Any, tok: Any, tc: TrainConfig, step: int, j: int, head: Any, dv: list[int]) -> dict:
    st = stage_at(tc, step)
    encs = []
    for b in range(tc.batch):
        index = (step * tc.accum + j) * tc.batch + b
        tokens = st.tokens_choices[index % len(st.tokens_choices)] if st.tokens_choices else st.tokens
        encs.append(encode(tok, replace(st, tokens=tokens).episode(tok, "train", index, seed=tc.seed)))
    m = run_episode(model, ad, encs, tc.history_kv, tc.bf16, head if tc.aux > 0 else None, dv)
    loss = m["ce"] + tc.beta_reg * ((m["beta_layers"] - tc.beta_target) ** 2).mean()
    if tc.beta_sel > 0:  # write less on filler (label 0, BOS excluded): the gate should choose what to keep
        filler = [m["beta_tokens"][b, -len(e["label"]):][1:][torch.tensor(e["label"][1:]) == 0] for b, e in enumerate(encs)]
        loss = loss + tc.beta_sel * torch.cat(filler).mean()
    if tc.aux > 0:
        loss = loss + tc.aux * m["aux_ce"]
    return {**m, "loss": loss, "tokens": tokens}


def curve_point(model: Any, ad: Any, tok: Any, tc: TrainConfig, step: int, head: Any = None, dv: list[int] | None = None) -> dict[str, Any]:
    from methods._deltamem.heldout import evaluate

    r = evaluate(model, ad, tok, tc.eval_setting, tc.eval_episodes, seed=tc.seed, history_kv=tc.history_kv, controls=("true", "mismatched"),
                 head=head if tc.aux > 0 else None, digit_vocab=dv)
    probe = {f"probe_{c}": r[c].get("probe_per_digit") for c in ("true", "mismatched")} if tc.aux > 0 else {}
    return {"step": step, "setting": r["setting"], "true": r["true"]["per_digit"], "mismatched": r["mismatched"]["per_digit"], **probe,
            "true_ce": r["true"]["answer_ce"], "mismatched_ce": r["mismatched"]["answer_ce"], "exact": r["true"]["exact"],
            "beta_filler": r["beta"]["filler"], "beta_fact": r["beta"]["fact"], "beta_key": r["beta"]["key"]}
