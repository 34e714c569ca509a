"""The task contract.

A task is a typed config (a dataclass, validated on construction) plus a pure, seeded generator:
``samples(tokenizer, seed)`` returns the same list of ``Sample`` for the same config, tokenizer and
seed, byte for byte. Contexts are sized in the model's own tokens, so the tokenizer is an input.
``score(sample, prediction)`` returns a number in [0, 1] from the generated text alone
(deterministic, no LLM judge).

The prompt around a sample is the harness's (``harness/prompt.py``), steered by two fields every
task config has: ``template`` (how a base model is asked when a sample has no ``answer_prefix``)
and ``stop`` (strings that end the answer).

Every sample carries ``slices`` (e.g. ``{"context_length": 2048, "depth": 50}``): the keys reports
group by. ``evidence`` holds the strings that answer the question (used by the oracle method and
for retrieval recall); methods other than the oracle never see it.

``context_id`` groups samples that share one context (the questions of one kv_recall haystack or
one multi_session / fact_update episode): their answers are correlated, so accuracy intervals treat
a context, not a sample, as the independent unit (see harness.stats). A task may set it; otherwise
it is a digest of the chunks, so samples with identical context text always share it.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import string
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.registry import ConfigError, check


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


#: the default ``task.template``: a base model asked a bare question continues the question; framed
#: as question and answer it answers. ``{question}`` is the sample's question.
QA_TEMPLATE = "Question: {question}\nAnswer:"


def template_fields(template: str) -> list[str]:
    """Names of the ``{...}`` fields in ``template`` (raises ValueError when the braces are malformed)."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def unescape(text: str) -> str:
    """``\\n`` -> newline, ``\\t`` -> tab, ``\\\\`` -> backslash; other backslashes stay."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


@dataclass
class TaskConfig:
    max_new_tokens: int = 16
    #: the text after the context for samples without an answer_prefix, on base models (chat models
    #: use their chat template); null: the bare question
    template: str | None = QA_TEMPLATE
    #: generation ends once the answer contains one of these (leading whitespace aside); the
    #: prediction is cut there. [] = only EOS and max_new_tokens end it
    stop: list[str] = field(default_factory=lambda: ["\n"])

    def __post_init__(self) -> None:
        # Hydra's command line passes "\n" as two characters; read \n, \t and \\ as the escapes they spell
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if isinstance(self.template, str):
            self.template = unescape(self.template)
        if isinstance(self.stop, (list, tuple)):
            self.stop = [unescape(x) if isinstance(x, str) else x for x in self.stop]
        expected = "a string with one {question} placeholder (literal braces doubled: {{ }}), or null for the bare question"
        if self.template is not None:
            check(isinstance(self.template, str) and self.template.strip() != "", "task.template", expected, self.template)
            try:
                names = template_fields(self.template)
            except ValueError as e:
                raise ConfigError(f"invalid value for 'task.template': {self.template!r}; {e}; expected {expected}") from None
            for name in names:
                if name != "question":
                    close = difflib.get_close_matches(name, ["question"], n=1)
                    hint = " (did you mean {question}?)" if close else ""
                    raise ConfigError(f"invalid value for 'task.template': unknown placeholder {{{name}}}{hint}; expected {expected}")
            check(names.count("question") == 1, "task.template", expected, self.template)
        check(isinstance(self.stop, (list, tuple)) and all(isinstance(x, str) and x != "" for x in self.stop), "task.stop", "a list of non-empty strings ([] for none)", self.stop)
        self.stop = list(self.stop)


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
