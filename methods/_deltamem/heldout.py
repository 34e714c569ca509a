"""Held-out evaluation that separates recall from answer format.

For ``split=heldout`` episodes (seeds disjoint from training) the same question is asked after three
histories: the true one, a mismatched one (episode i+1's history before episode i's question) and none
(only BOS written). An adapter that has learned only the format scores the same on all three; recall
shows as true > mismatched. Per-digit accuracy is a ratio over the answer's digit tokens; its 95 %
interval and that of the true − mismatched gap come from a bootstrap over episodes (paired for the
gap: the same episodes are resampled for both), exact-match intervals are Wilson intervals.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from harness import stats
from methods._deltamem.episodes import Setting, encode, run_episode

CONTROLS = ("true", "mismatched", "none")


def wilson(k: int, n: int) -> list[float] | None:
    """95 % Wilson interval of k right out of n (harness.stats.wilson), rounded for the tables; None for n = 0."""
    return None if n == 0 else [round(v, 4) for v in stats.wilson(k / n, n)]


def _ratio_ci(right: list[list[int]], total: list[int], n_boot: int = 2000, seed: int = 0) -> list[list[float]]:
    """Bootstrap over episodes: for each of several paired series of per-episode right-digit counts,
    the 95 % interval of sum(right)/sum(total) on the same resamples."""
    rng, n = random.Random(seed), len(total)
    stats: list[list[float]] = [[] for _ in right]
    for _ in range(n_boot):
        idx = [rng.randrange(n) for _ in range(n)]
        t = sum(total[i] for i in idx) or 1
        for s, r in zip(stats, right):
            s.append(sum(r[i] for i in idx) / t)
    out = []
    for s in stats:
        s.sort()
        out.append([round(s[int(0.025 * n_boot)], 4), round(s[int(0.975 * n_boot) - 1], 4)])
    return out


@torch.no_grad()
def evaluate(model: Any, ad: Any, tok: Any, setting: Setting, n: int, seed: int = 0, history_kv: bool = False,
             controls: tuple[str, ...] = CONTROLS, batch: int = 8, head: Any = None, digit_vocab: list[int] | None = None) -> dict[str, Any]:
    """Per-digit / exact accuracy and answer CE per control, with intervals; β on filler vs fact tokens;
    with ``head`` (the trainer's read-out probe) also the probe's per-digit accuracy on the reads."""
    eps = [setting.episode(tok, "heldout", i, seed=seed) for i in range(n)]
    per: dict[str, dict[str, list]] = {c: {"right": [], "exact": [], "ce": [], "probe": []} for c in controls}
    total: list[int] = []
    beta = {"filler": [0.0, 0], "fact": [0.0, 0], "key": [0.0, 0]}
    for lo in range(0, n, batch):
        idx = list(range(lo, min(n, lo + batch)))
        for c in controls:
            encs = [encode(tok, eps[i], history=c != "none") for i in idx]
            if c == "mismatched":
                for e, i in zip(encs, idx):
                    e["write"] = encode(tok, eps[(i + 1) % n])["write"]
            m = run_episode(model, ad, encs, history_kv=history_kv, head=head, digit_vocab=digit_vocab)
            if head is not None:
                per[c]["probe"].append(int((m["aux_pred"] == m["aux_target"]).sum()))
            for b, e in enumerate(encs):
                is_digit = torch.tensor([tok.decode([t]).strip().isdigit() for t in e["answer"]], device=m["pred"].device)
                right = m["preds"][b] == m["targets"][b]
                per[c]["right"].append(int((right & is_digit).sum()))
                per[c]["exact"].append(int(right.all()))
                per[c]["ce"].append(float(torch.nn.functional.cross_entropy(m["logits"][b], m["targets"][b])))
                if c == "true":
                    total.append(int(is_digit.sum()))
                    bt = m["beta_tokens"][b, -len(e["label"]):]  # left-padded rows: the episode's tokens are the last ones
                    for lab, name in ((0, "filler"), (1, "fact"), (2, "key")):
                        sel = torch.tensor([x == lab for x in e["label"]])
                        sel[0] = False  # BOS
                        beta[name][0] += float(bt[sel].sum())
                        beta[name][1] += int(sel.sum())
    ad.reset()
    cis = _ratio_ci([per[c]["right"] for c in controls], total, seed=seed)
    out: dict[str, Any] = {"setting": setting.label(), "tokens": setting.tokens, "episodes": n, "digits": sum(total)}
    for c, ci in zip(controls, cis):
        out[c] = {"per_digit": round(sum(per[c]["right"]) / max(sum(total), 1), 4), "per_digit_ci95": ci,
                  "exact": round(sum(per[c]["exact"]) / n, 4), "exact_ci95": wilson(sum(per[c]["exact"]), n),
                  "answer_ce": round(sum(per[c]["ce"]) / n, 4)}
        if head is not None:
            out[c]["probe_per_digit"] = round(sum(per[c]["probe"]) / max(sum(total), 1), 4)
    if "true" in controls and "mismatched" in controls:
        diff = [a - b for a, b in zip(per["true"]["right"], per["mismatched"]["right"])]
        shifted = [d + t for d, t in zip(diff, total)]  # bootstrap the gap as a ratio: (Σ diff)/(Σ total)
        lo, hi = _ratio_ci([shifted], total, seed=seed)[0]
        out["gap_true_minus_mismatched"] = {"per_digit": round(sum(diff) / max(sum(total), 1), 4),
                                            "ci95": [round(lo - 1, 4), round(hi - 1, 4)]}
    out["beta"] = {k: (round(s / c, 4) if c else None) for k, (s, c) in beta.items()}
    return out


def markdown(result: dict[str, Any]) -> str:
    """The held-out table of ``train.eval_only`` output as Markdown (numbers from the JSON, never typed)."""
    ci = lambda x: "–" if x is None else f"[{x[0]:.3f}, {x[1]:.3f}]"  # noqa: E731
    lines = ["| setting | n episodes (digits) | history | per-digit (95 % CI) | exact (95 % CI) | answer CE |", "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        for c in CONTROLS:
            if c not in row:
                continue
            r = row[c]
            lines.append(f"| {row['setting']} | {row['episodes']} ({row['digits']}) | {c} | {r['per_digit']:.3f} {ci(r['per_digit_ci95'])} | "
                         f"{r['exact']:.3f} {ci(r['exact_ci95'])} | {r['answer_ce']:.3f} |")
        g = row.get("gap_true_minus_mismatched")
        if g:
            lines.append(f"| {row['setting']} | | **true − mismatched** | **{g['per_digit']:+.3f}** {ci(g['ci95'])} | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import json
    import sys

    print(markdown(json.loads(open(sys.argv[1]).read())), end="")
