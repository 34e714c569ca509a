"""The task contract.

A task is a typed config (a dataclass, validated on construction) plus a pure, seeded generator:
``samples(tokenizer, seed)`` returns the same list of ``Sample`` for the same config, tokenizer and
seed, byte for byte. Contexts are sized in the model's own tokens, so the tokenizer is an input.
``score(sample, prediction)`` returns a number in [0, 1] from the generated text alone
(deterministic, no LLM judge).

Every sample carries ``slices`` (e.g. ``{"context_length": 2048, "depth": 50}``): the keys reports
group by. ``evidence`` holds the strings that answer the question (used by the oracle method and
for retrieval recall); methods other than the oracle never see it.

``context_id`` groups samples that share one context (the questions of one kv_recall haystack or
one multi_session / fact_update episode): their answers are correlated, so accuracy intervals treat
a context, not a sample, as the independent unit (see harness.stats). A task may set it; otherwise
it is a digest of the chunks, so samples with identical context text always share it.
"""

from __future__ import annotations

import hashlib
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
    context_id: str = ""  # samples sharing one context share this key; "" = a digest of the chunks

    def __post_init__(self) -> None:
        if not self.context_id:
            # \x1e (record separator) keeps ["ab", "c"] and ["a", "bc"] apart
            self.context_id = "ctx-" + hashlib.sha1("\x1e".join(self.chunks).encode("utf-8")).hexdigest()[:16]

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
