"""One training/evaluation episode on an attached δ-mem: write the history, read the question, score the answer.

Shared by the trainer (``train.py``) and the held-out evaluation (``heldout.py``). An episode is a
write segment ([BOS] + history; writes on) and a read segment (question + answer; writes off). The
backbone's KV for the history is discarded unless ``history_kv`` (state-only protocol by default):
the read segment attends only to itself, at positions continuing after the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Setting:
    """Which episodes: write-segment length, key length (min, max), where the fact sits, which kind,
    and ``end``: text appended to the answer and trained like it (e.g. "\n", so that the model stops
    after the key instead of repeating it; "" keeps the original episodes)."""

    tokens: int = 256
    digits: tuple[int, int] = (3, 7)
    place: float | None = None
    kind: str | None = None
    end: str = ""

    def __post_init__(self) -> None:
        from harness.registry import check

        self.digits = tuple(int(d) for d in self.digits)  # type: ignore[assignment]
        check(isinstance(self.tokens, int) and self.tokens > 0, "tokens", "a positive integer", self.tokens)
        check(len(self.digits) == 2 and 1 <= self.digits[0] <= self.digits[1], "digits", "[min, max] with 1 <= min <= max", self.digits)
        check(self.place is None or 0 <= self.place <= 1, "place", "null or a number in [0, 1]", self.place)
        check(self.kind in (None, "code", "facts"), "kind", "null, code or facts", self.kind)
        if isinstance(self.end, str) and "\\" in self.end:  # the command line cannot type a newline: decode "\n", "\t"
            self.end = self.end.encode().decode("unicode_escape")
        check(isinstance(self.end, str) and not self.end.strip(), "end", "a string of whitespace (e.g. \"\\n\")", self.end)

    def episode(self, tok: Any, split: str, index: int, seed: int = 0) -> Any:
        from methods._deltamem.data import episode

        from dataclasses import replace

        ep = episode(tok, split, index, self.tokens, kind=self.kind, seed=seed, digits=self.digits, place=self.place)
        return replace(ep, answer=ep.answer + self.end) if self.end else ep

    def label(self) -> str:
        where = "random place" if self.place is None else f"place {self.place:g}"
        return (f"{self.tokens} tok, {self.digits[0]}-{self.digits[1]} digits, {where}" + (f", {self.kind}" if self.kind else "")
                + (f", then {self.end!r}" if self.end else ""))


DIGITS = "0123456789"


def digit_ids(tok: Any) -> list[int]:
    """Token id of each digit 0-9 (the answer's digits are single tokens in the supported tokenizers)."""
    ids = [tok(d, add_special_tokens=False).input_ids for d in DIGITS]
    if any(len(i) != 1 for i in ids):
        raise ValueError("δ-mem training needs a tokenizer that encodes each digit as one token")
    return [i[0] for i in ids]


def encode(tok: Any, ep: Any, history: bool = True) -> dict[str, Any]:
    """Token ids of the write segment (BOS + history; only BOS when ``history`` is False), the read
    segment and the answer, and a per-token label of the write segment: 0 filler, 1 fact sentence, 2 key digit."""
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    enc = tok(ep.write if history else "", add_special_tokens=False, return_offsets_mapping=True)
    label = []
    for a, b in enc.offset_mapping:
        inside = [s for s in ep.facts if a < s[1] and b > s[0]]
        label.append(0 if not inside else 2 if ep.write[a:b].strip().isdigit() else 1)
    ids = lambda s: list(tok(s, add_special_tokens=False).input_ids)  # noqa: E731
    return {"write": bos + list(enc.input_ids), "label": [0] * len(bos) + label, "read": ids(ep.read), "answer": ids(ep.answer)}


def _left_pad(rows: list[list[int]], pad: int, dev: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, L] ids and 2-D mask, padded on the left so every row ends at the last column."""
    L = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (L - len(r)) + r for r in rows], device=dev)
    mask = torch.tensor([[0] * (L - len(r)) + [1] * len(r) for r in rows], device=dev)
    return ids, mask


def run_episode(model: nn.Module, ad: Any, enc: dict[str, Any] | list[dict[str, Any]], history_kv: bool = False, bf16: bool = False,
                head: nn.Module | None = None, digit_vocab: list[int] | None = None) -> dict[str, Any]:
    """Forward one encoded episode (or a batch of them, left-padded: padding is neither read nor
    written) with δ-mem attached. Returns the mean answer CE, per episode the predictions and targets
    of the answer tokens, per-layer mean β over the written tokens, β per write token (mean over
    layers; [B, T_w], left-padded) and, with ``head`` (a probe over the concatenated reads), the
    probe's CE and predictions on the digit targets."""
    encs = [enc] if isinstance(enc, dict) else list(enc)
    dev = next(model.parameters()).device
    B = len(encs)
    ad.reset()
    w, wmask = _left_pad([e["write"] for e in encs], 0, dev)
    x, xmask = _left_pad([e["read"] + e["answer"] for e in encs], 0, dev)
    A = [len(e["answer"]) for e in encs]
    wlen = wmask.sum(1, keepdim=True)
    wpos = (wmask.cumsum(1) - 1).clamp_min(0)
    xpos = wlen + (xmask.cumsum(1) - 1).clamp_min(0)  # positions continue after each history
    cache = None
    if history_kv:  # paper protocol: the read segment also attends to the history's KV
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
    padded = B > 1 and not bool(wmask.all() and xmask.all())
    ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else torch.autocast(dev.type, enabled=False)
    with ctx, ad.record() as rec:
        ad.set_default_write(True)
        model(input_ids=w, attention_mask=wmask if padded else None, position_ids=wpos, cache=cache,
              use_cache=cache is not None, logits_to_keep=1)
        ad.set_default_write(False)
        amask = (torch.cat([wmask, xmask], 1) if history_kv else xmask) if padded else None
        keep = max(A) + 1
        logits = model(input_ids=x, attention_mask=amask, position_ids=xpos, cache=cache, use_cache=cache is not None,
                       logits_to_keep=keep).logits.float()  # [B, keep, V]
    X = x.shape[1]
    # row b's answer is its last A_b tokens; token j is predicted at column X - A_b - 1 + j
    rows = torch.tensor([b for b in range(B) for _ in range(A[b])], device=dev)
    cols = torch.tensor([keep - A[b] - 1 + j for b in range(B) for j in range(A[b])], device=dev)
    target = torch.tensor([t for e in encs for t in e["answer"]], device=dev)
    lg = logits[rows, cols]  # [ΣA, V]
    pred = lg.argmax(-1)
    splits = [sum(A[:b]) for b in range(B + 1)]
    out: dict[str, Any] = {"ce": F.cross_entropy(lg, target), "pred": pred, "target": target,
                           "preds": [pred[splits[b]:splits[b + 1]] for b in range(B)],
                           "targets": [target[splits[b]:splits[b + 1]] for b in range(B)],
                           "logits": [lg[splits[b]:splits[b + 1]].detach() for b in range(B)],
                           "beta_layers": rec.mean_beta(), "beta_tokens": rec.token_beta(0)}
    if head is not None and digit_vocab is not None:
        cls = {t: i for i, t in enumerate(digit_vocab)}
        sel = [i for i, t in enumerate(target.tolist()) if t in cls]
        reads = rec.concat_reads(1)[rows[sel], (X - keep) + cols[sel]]  # [digits, layers·N·r] at the predicting positions
        z = head(reads)
        y = torch.tensor([cls[t] for t in target[sel].tolist()], device=dev)
        out["aux_ce"], out["aux_pred"], out["aux_target"] = F.cross_entropy(z, y), z.argmax(-1), y
    return out


def make_head(ad: Any, classes: int = 10) -> nn.Module:
    """Read-out probe for the auxiliary loss: scale-free (LayerNorm without affine) then linear, over
    the reads of all layers [layers·N·r] -> the 10 digits. Trained with the adapter, never shipped."""
    width = sum(layer.width for layer in ad.layers.values())
    dev = next(ad.parameters()).device
    return nn.Sequential(nn.LayerNorm(width, elementwise_affine=False), nn.Linear(width, classes)).to(dev)
