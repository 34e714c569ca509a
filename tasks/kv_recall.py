"""kv_recall: multi-query associative recall as text (after Zoology's MQAR), swept over the number
of facts at a fixed context length.

An episode hides ``N`` facts "zorvik: 4821." (invented keys, random values) in a haystack of
``context_length`` tokens, then asks ``num_queries`` of them. The sweep over N at fixed length finds
each method's capacity knee: a fixed-size state (r x r delta-rule state per layer) can hold about r
exact associations, full KV holds all of them.

**One Sample per query.** The Q samples of an episode share the same context (``meta["episode"]``)
so each answer is short and the score is plain exact match: 1 if the first number in the answer
equals the value. Per-N accuracy is the fraction of queries answered, reported in the slice
``num_facts``.

``layout: spread`` puts fact j at depth (j + 0.5) / N of the haystack; ``block`` puts all facts
together at the start, one per line (closest to MQAR), with the haystack after them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from harness.registry import check
from tasks import _split, haystack
from tasks._lengths import positive_int
from tasks._pack import ensure
from tasks.base import Sample, Task, TaskConfig

TEMPLATES = {
    "eval": {
        "intro": "Below is a list of keys and their values hidden in some text. Memorize every key and its value.\n",
        "fact": "{key}: {value}.",
        "question": "What is the value of {key}?",
        "prefix": "{key}:",
    },
    "train": {
        "intro": "Remember each binding of the form name -> number that appears in the passage.\n",
        "fact": "{key} -> {value};",
        "question": "Which number is bound to {key}?",
        "prefix": "{key} ->",
    },
}


@dataclass
class KvRecallConfig(TaskConfig):
    context_length: int = 2048
    num_facts: Any = field(default_factory=lambda: [8, 32, 64])  # an int or a list (the sweep)
    num_queries: int = 4  # questions per episode (at most num_facts)
    samples_per_cell: int = 1  # episodes per value of num_facts
    value_digits: int = 6  # 4-digit values read as years to a small model (it answers "1980")
    layout: str = "spread"  # spread | block
    haystack: str = "noise"  # noise | prose
    split: str = "eval"
    max_new_tokens: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.num_facts, int) and not isinstance(self.num_facts, bool):
            self.num_facts = [self.num_facts]
        check(isinstance(self.num_facts, (list, tuple)) and len(self.num_facts) > 0, "task.num_facts", "a positive integer or a non-empty list of them", self.num_facts)
        self.num_facts = list(self.num_facts)
        for n in self.num_facts:
            check(isinstance(n, int) and not isinstance(n, bool) and n > 0, "task.num_facts", "positive integers", n)
        positive_int(self.context_length, "context_length", minimum=64)
        for name in ("num_queries", "samples_per_cell", "max_new_tokens"):
            positive_int(getattr(self, name), name)
        check(isinstance(self.value_digits, int) and 2 <= self.value_digits <= 12, "task.value_digits", "an integer from 2 to 12", self.value_digits)
        check(self.layout in ("spread", "block"), "task.layout", "spread or block", self.layout)
        check(self.haystack in ("noise", "prose"), "task.haystack", "noise or prose", self.haystack)
        _split.check_split(self.split)


class KvRecall(Task):
    name = "kv_recall"
    Config = KvRecallConfig
    metric = "exact_match"

    def samples(self, tokenizer: Any, seed: int) -> list[Sample]:
        cfg, t = self.cfg, TEMPLATES[self.cfg.split]
        L = cfg.context_length
        out = []
        for N in cfg.num_facts:
            for e in range(cfg.samples_per_cell):
                r = _split.rng(self.name, cfg.split, seed, L, N, e, cfg.value_digits, cfg.layout)
                keys: set[str] = set()
                vals: set[str] = set()
                facts = [(_split.invent(r, cfg.split, keys).lower(), _split.number(r, cfg.value_digits, vals)) for _ in range(N)]
                lines = [t["fact"].format(key=k, value=v) for k, v in facts]
                if cfg.layout == "spread":
                    inserts = [((j + 0.5) / N, s) for j, s in enumerate(lines)]
                else:
                    inserts = [(0.0, "\n".join(lines) + "\n")]
                built = haystack.build(tokenizer, cfg.haystack, L, inserts, r, head=t["intro"])
                ensure(built.tokens, L, "task.context_length and task.num_facts", f"{N} facts do not fit; raise task.context_length or lower task.num_facts")
                asked = sorted(r.sample(range(N), min(cfg.num_queries, N)))
                for q, j in enumerate(asked):
                    key, value = facts[j]
                    out.append(
                        Sample(
                            id=f"kv_recall-{N}-{e}-{q}",
                            chunks=[built.text],
                            question=t["question"].format(key=key),
                            answers=[value],
                            answer_prefix=t["prefix"].format(key=key),
                            evidence=[lines[j]],
                            slices={"num_facts": N, "context_length": L},
                            context_id=f"kv_recall-{N}-{e}",  # the episode's questions share its haystack
                            meta={"episode": f"{N}-{e}", "fact_index": j, "split": cfg.split, "context_tokens": built.tokens},
                        )
                    )
        return out

    def score(self, sample: Sample, prediction: str) -> float:
        m = re.search(r"\d+", prediction)
        return float(m is not None and m.group(0) == sample.answers[0])
