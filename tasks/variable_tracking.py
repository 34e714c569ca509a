"""variable_tracking: RULER's multi-hop tracing task, scored by string_match_all.

Each chain starts with "VAR ABCDE = 12345." and continues with ``num_hops`` hops "VAR FGHIJ = VAR
ABCDE."; ``num_chains`` chains with different values are hidden in a noise haystack, each chain's
statements in order at seeded random depths. The question gives the first chain's value and asks
for every variable that ends up holding it (``num_hops + 1`` names); the score is the fraction of
those names found in the answer (``meta["references"]``; ``answers[0]`` is all of them joined by
commas, a complete answer). Depth has no single meaning here, so there is no depth axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks import _split, haystack
from tasks._lengths import LengthsConfig, positive_int
from tasks._pack import ensure
from tasks.base import Sample, Task
from tasks.metrics import string_match_all

TEMPLATES = {
    # RULER verbatim, including its "assgined"
    "eval": {
        "intro": "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n",
        "first": "VAR {name} = {value}.",
        "hop": "VAR {name} = VAR {prev}.",
        "question": "Question: Find all variables that are assigned the value {value} in the text above.",
        "prefix": "Answer: According to the chain(s) of variable assignment in the text above, {count} variables are assgined the value {value}, they are:",
    },
    "train": {
        "intro": "Follow the chains of LET bindings scattered through the passage below.\n\n",
        "first": "LET {name} := {value}.",
        "hop": "LET {name} := {prev}.",
        "question": "Which names end up bound to {value}, directly or through other names?",
        "prefix": "Following the LET bindings, the {count} names bound to {value} are:",
    },
}


@dataclass
class VariableTrackingConfig(LengthsConfig):
    samples_per_cell: int = 2  # episodes per context length (configs/task/variable_tracking.yaml has always said 2)
    num_chains: int = 1
    num_hops: int = 4
    max_new_tokens: int = 32
    stop: list[str] = field(default_factory=list)  # RULER scores the whole output; answers may list values over lines

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_int(self.num_chains, "num_chains")
        positive_int(self.num_hops, "num_hops", minimum=0)


class VariableTracking(Task):
    name = "variable_tracking"
    Config = VariableTrackingConfig
    metric = "string_match_all"

    def samples(self, tokenizer: Any, seed: int) -> list[Sample]:
        cfg = self.cfg
        t = TEMPLATES[cfg.split]
        out = []
        for n in cfg.context_lengths:
            for i in range(cfg.samples_per_cell):
                r = _split.rng(self.name, cfg.split, seed, n, i, cfg.num_chains, cfg.num_hops)
                names: set[str] = set()
                values: set[str] = set()
                chains = []
                for _ in range(cfg.num_chains):
                    chain = [_split.letters(r, cfg.split, 5, names) for _ in range(cfg.num_hops + 1)]
                    value = _split.number(r, 5, values)
                    lines = [t["first"].format(name=chain[0], value=value)]
                    lines += [t["hop"].format(name=b, prev=a) for a, b in zip(chain, chain[1:])]
                    chains.append((chain, value, lines))
                inserts = []
                for _, _, lines in chains:
                    depths = sorted(r.random() for _ in lines)
                    inserts += list(zip(depths, lines))  # build() sorts stably by depth
                built = haystack.build(tokenizer, cfg.haystack, n, inserts, r, head=t["intro"])
                ensure(built.tokens, n, "task.context_lengths, task.num_chains and task.num_hops", "use longer contexts or fewer chains/hops")
                chain, value, lines = chains[0]
                out.append(
                    Sample(
                        id=f"variable_tracking-{n}-{i}",
                        chunks=[built.text],
                        question=t["question"].format(value=value),
                        answers=[", ".join(chain)],
                        answer_prefix=t["prefix"].format(count=len(chain), value=value),
                        evidence=lines,
                        slices={"context_length": n},
                        meta={"references": list(chain), "split": cfg.split, "context_tokens": built.tokens, "num_chains": cfg.num_chains, "num_hops": cfg.num_hops},
                    )
                )
        return out

    def score(self, sample: Sample, prediction: str) -> float:
        return string_match_all(prediction, sample.meta.get("references", sample.answers))
