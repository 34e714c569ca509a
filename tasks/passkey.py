"""passkey: the Landmark-attention pass-key retrieval format, scored by exact integer match."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from harness.registry import check
from tasks import haystack
from tasks._grid import GridConfig
from tasks.base import Sample, Task

INTRO = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there. "


@dataclass
class PasskeyConfig(GridConfig):
    context_lengths: list[int] = field(default_factory=lambda: [1024, 2048])
    depths: list[float] = field(default_factory=lambda: [10, 50, 90])
    digits: int = 5
    max_new_tokens: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        check(isinstance(self.digits, int) and 1 <= self.digits <= 18, "task.digits", "an integer from 1 to 18", self.digits)


class Passkey(Task):
    name = "passkey"
    Config = PasskeyConfig

    def samples(self, tokenizer: Any, seed: int) -> list[Sample]:
        out = []
        for n, depth, i in self.cfg.cells():
            rng = random.Random(f"passkey/{seed}/{n}/{depth:g}/{i}")
            key = str(rng.randrange(10 ** (self.cfg.digits - 1), 10**self.cfg.digits))
            needle = f"The pass key is {key}. Remember it. {key} is the pass key."
            built = haystack.build(tokenizer, self.cfg.haystack, n, [(depth / 100, needle)], rng, head=INTRO)
            out.append(
                Sample(
                    id=f"passkey-{n}-{depth:g}-{i}",
                    chunks=[built.text],
                    question="What is the pass key?",
                    answers=[key],
                    answer_prefix="The pass key is",
                    evidence=[needle],
                    slices={"context_length": n, "depth": depth},
                    meta={"context_tokens": built.tokens, "needle_token": built.positions[0]},
                )
            )
        return out

    def score(self, sample: Sample, prediction: str) -> float:
        m = re.search(r"\d+", prediction)
        return float(m is not None and m.group(0) == sample.answers[0])
