"""The task contract.

A task is a typed config (a dataclass, validated on construction) plus a pure, seeded generator:
``samples(tokenizer, seed)`` returns the same list of ``Sample`` for the same config, tokenizer and
seed, byte for byte. Contexts are sized in the model's own tokens, so the tokenizer is an input.
``score(sample, prediction)`` returns a number in [0, 1] from the generated text alone
(deterministic, no LLM judge).

Every sample carries ``slices`` (e.g. ``{"context_length": 2048, "depth": 50}``): the keys reports
group by. ``evidence`` holds the strings that answer the question (used by the oracle method and
for retrieval recall); methods other than the oracle never see it.
"""

from __future__ import annotations

import re
import string
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class Sample:
    id: str
    chunks: list[str]  # the context, as one or more chunks/messages
    question: str
    answers: list[str]  # accepted answers / key phrases
    answer_prefix: str = ""  # what a base model completes ("The pass key is")
    evidence: list[str] = field(default_factory=list)
    slices: dict[str, Any] = field(default_factory=dict)
    category: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def context(self) -> str:
        return "".join(self.chunks)


@dataclass
class TaskConfig:
    max_new_tokens: int = 16


class Task(ABC):
    name: ClassVar[str]
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    #: name of the per-sample metric reported as accuracy
    metric: ClassVar[str] = "accuracy"
    #: True: samples come from a user's file (task.path), not from the seed, so the contract tests'
    #: seeded-sampling check does not apply
    needs_path: ClassVar[bool] = False

    def __init__(self, cfg: TaskConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def samples(self, tokenizer: Any, seed: int) -> list[Sample]: ...

    @abstractmethod
    def score(self, sample: Sample, prediction: str) -> float: ...


def normalize(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze spaces (SQuAD-style)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def contains_any(prediction: str, answers: list[str]) -> float:
    p = normalize(prediction)
    return float(any(normalize(a) and normalize(a) in p for a in answers))
