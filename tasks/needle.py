"""needle: Needle-in-a-Haystack (after gkamradt/LLMTest_NeedleInAHaystack), deterministic scoring.

A seeded fact ("The secret ingredient in Mara's soup is saffron.") is hidden at a given depth of a
haystack of a given length; the model is asked for it and scored 1 when its answer contains the
key phrase. Facts are drawn from templates x invented names x objects, so no two cells share a
needle and the model cannot answer from prior knowledge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tasks import haystack
from tasks._grid import GridConfig
from tasks.base import Sample, Task, contains_any

# (needle, question, answer prefix, objects): each template has its own plausible objects, so the
# fact reads naturally and the model is not pushed towards prior knowledge by an odd pairing.
TEMPLATES = [
    ("The secret ingredient in {name}'s soup is {obj}.", "What is the secret ingredient in {name}'s soup?",
     "The secret ingredient in {name}'s soup is", ["saffron", "cardamom", "ginger", "nutmeg", "tamarind", "fennel"]),
    ("The best thing to do in {place} is to visit the {obj}.", "What is the best thing to do in {place}?",
     "The best thing to do in {place} is to visit the", ["lighthouse", "observatory", "aquarium", "botanical garden", "old harbour", "clock tower"]),
    ("{name}'s favourite childhood toy was a {obj}.", "What was {name}'s favourite childhood toy?",
     "{name}'s favourite childhood toy was a", ["kite", "tambourine", "spinning top", "rocking horse", "yo-yo", "wooden train"]),
]
NAMES = ["Mara", "Tobias", "Ingrid", "Kofi", "Lucia", "Ravi", "Odile", "Bram", "Yuki", "Selim", "Noor", "Elspeth"]
PLACES = ["Port Avalon", "Lake Sorrel", "New Brixham", "Eastvale", "Kirrin Bay", "Mount Tallow"]


@dataclass
class NeedleConfig(GridConfig):
    pass


class Needle(Task):
    name = "needle"
    Config = NeedleConfig

    def samples(self, tokenizer: Any, seed: int) -> list[Sample]:
        out = []
        for n, depth, i in self.cfg.cells():
            rng = random.Random(f"needle/{seed}/{n}/{depth:g}/{i}")
            needle_t, q_t, prefix_t, objects = rng.choice(TEMPLATES)
            fill = {"name": rng.choice(NAMES), "place": rng.choice(PLACES), "obj": rng.choice(objects)}
            needle = needle_t.format(**fill)
            built = haystack.build(tokenizer, self.cfg.haystack, n, [(depth / 100, needle)], rng)
            out.append(
                Sample(
                    id=f"needle-{n}-{depth:g}-{i}",
                    chunks=[built.text],
                    question=q_t.format(**fill),
                    answers=[fill["obj"]],
                    answer_prefix=prefix_t.format(**fill),
                    evidence=[needle],
                    slices={"context_length": n, "depth": depth},
                    meta={"context_tokens": built.tokens, "needle_token": built.positions[0]},
                )
            )
        return out

    def score(self, sample: Sample, prediction: str) -> float:
        return contains_any(prediction, sample.answers)
