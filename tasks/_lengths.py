"""Config base for generated tasks without a depth axis: context lengths x seeded episodes, a split."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.registry import check
from tasks import _split
from tasks.base import TaskConfig


def positive_int(value: Any, name: str, minimum: int = 1) -> None:
    check(isinstance(value, int) and not isinstance(value, bool) and value >= minimum, f"task.{name}", f"an integer >= {minimum}", value)


@dataclass
class LengthsConfig(TaskConfig):
    context_lengths: list[int] = field(default_factory=lambda: [1024, 2048])
    samples_per_cell: int = 1  # seeded episodes per context length
    haystack: str = "noise"  # noise | prose
    split: str = "eval"  # eval | train: disjoint entities, templates and seeds

    def __post_init__(self) -> None:
        super().__post_init__()
        self.context_lengths = list(self.context_lengths)
        check(len(self.context_lengths) > 0, "task.context_lengths", "a non-empty list of token counts", self.context_lengths)
        for n in self.context_lengths:
            check(isinstance(n, int) and n >= 64, "task.context_lengths", "integers >= 64 (tokens)", n)
        positive_int(self.samples_per_cell, "samples_per_cell")
        positive_int(self.max_new_tokens, "max_new_tokens")
        check(self.haystack in ("noise", "prose"), "task.haystack", "noise or prose", self.haystack)
        _split.check_split(self.split)
