"""The length x depth grid shared by needle-style tasks, with validation that names the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from harness.registry import check
from tasks.base import TaskConfig


@dataclass
class GridConfig(TaskConfig):
    context_lengths: list[int] = field(default_factory=lambda: [512, 1024, 2048])
    depths: list[float] = field(default_factory=lambda: [0, 25, 50, 75, 100])  # percent of the context
    samples_per_cell: int = 1
    haystack: str = "noise"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.context_lengths = list(self.context_lengths)
        self.depths = list(self.depths)
        check(len(self.context_lengths) > 0, "task.context_lengths", "a non-empty list of token counts", self.context_lengths)
        for n in self.context_lengths:
            check(isinstance(n, int) and 64 <= n, "task.context_lengths", "integers >= 64 (tokens)", n)
        check(len(self.depths) > 0, "task.depths", "a non-empty list of percents", self.depths)
        for d in self.depths:
            check(isinstance(d, (int, float)) and 0 <= d <= 100, "task.depths", "percents between 0 and 100", d)
        self.depths = [float(d) for d in self.depths]
        check(isinstance(self.samples_per_cell, int) and self.samples_per_cell > 0, "task.samples_per_cell", "a positive integer", self.samples_per_cell)
        check(self.haystack in ("noise", "prose"), "task.haystack", "noise or prose", self.haystack)
        check(isinstance(self.max_new_tokens, int) and self.max_new_tokens > 0, "task.max_new_tokens", "a positive integer", self.max_new_tokens)

    def cells(self) -> Iterator[tuple[int, float, int]]:
        for n in self.context_lengths:
            for d in self.depths:
                for i in range(self.samples_per_cell):
                    yield n, d, i
