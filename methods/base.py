"""The memory-method contract.

A memory method turns a context into some persistent memory and later answers a question from it.
The harness drives it in three calls and times everything from the outside:

1. ``reset()``            forget everything (called before each sample).
2. ``ingest(context)``    write the context into memory. The question is NOT visible here; a
                          query-aware variant is a separately named method.
3. ``answer(question)``   a generator that *yields token ids one at a time* (greedy). The harness
                          stamps the time at each ``next()``, so the first yield is the time to
                          first token and the gaps are inter-token latencies. A method must yield a
                          token as soon as it is decided (no buffering) and must not time itself.

``state_bytes()`` reports the method's persistent memory after ingest, counted from the tensors and
objects themselves (KV tensors, recurrent states, retrieval text + index), never from a formula.
``attended_tokens()`` is the number of tokens the backbone attends over when answering.

A method that can keep its memory between sessions sets ``persistable = True`` and implements
``save_memory(folder)`` (after ingest: write the memory as safetensors + JSON, atomically; return the
tensor bytes per part, e.g. ``{"state": 4608, "window_kv": ...}``) and ``load_memory(folder)`` (after
``reset()``, possibly in a fresh process: restore it so that ``answer`` gives the same tokens as
right after ingest). ``methods._persist`` has the folder format and the KV-cache helpers.

The context arrives pre-tokenised by the harness so that all methods see identical token ids:
``Context.prefix_ids`` (BOS or the chat header) then one id list per chunk/message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

if TYPE_CHECKING:
    from harness.models import LoadedModel


@dataclass
class Context:
    """What a method may ingest: the prompt up to (not including) the question."""

    prefix_ids: list[int]  # BOS / chat header, before the context
    chunk_ids: list[list[int]]  # one id list per chunk/message, tokenised separately
    chunk_texts: list[str]  # the same chunks as text (for retrieval methods)

    @property
    def num_tokens(self) -> int:
        return len(self.prefix_ids) + sum(len(c) for c in self.chunk_ids)

    def all_ids(self) -> list[int]:
        out = list(self.prefix_ids)
        for c in self.chunk_ids:
            out.extend(c)
        return out


@dataclass
class Question:
    """The part of the prompt after the context: question, turn end, answer prefix."""

    ids: list[int]
    text: str
    answer_prefix: str = ""
    evidence: list[str] = field(default_factory=list)  # only the oracle method may look at this


@dataclass
class MethodConfig:
    """Fields every method accepts. Subclasses add their own."""

    chunk_size: int = 512  # tokens per forward call during ingest

    def __post_init__(self) -> None:
        from harness.registry import check

        check(isinstance(self.chunk_size, int) and self.chunk_size > 0, "method.chunk_size", "a positive integer", self.chunk_size)


class Method(ABC):
    """Base class. Subclasses set ``name`` (= module name) and ``Config`` (a MethodConfig dataclass)."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    #: a label for reports when the method sees more than the protocol allows (e.g. "query-aware")
    variant: str = ""
    #: config values the shared contract tests (tests/test_contracts.py) use on their short contexts
    #: (~300 tokens, ingested in chunks of 64), e.g. a window smaller than the context
    contract_overrides: ClassVar[dict[str, Any]] = {}
    #: False: the shared contract tests skip this method (one built to fail, say)
    contract: ClassVar[bool] = True
    #: a method that exists only for the harness's own tests (never benchmarked, left out of presets)
    test_only: ClassVar[bool] = False
    #: optional packages the method imports (module name -> how to install it); without them the
    #: method raises a ConfigError and tests that need it skip with this hint
    requires: ClassVar[dict[str, str]] = {}

    @classmethod
    def missing(cls) -> list[str]:
        """Install hints for the optional packages in ``requires`` that cannot be imported."""
        import importlib.util

        return [hint for module, hint in cls.requires.items() if importlib.util.find_spec(module) is None]
    #: True when save_memory / load_memory are implemented
    persistable: ClassVar[bool] = False

    def __init__(self, cfg: MethodConfig, lm: "LoadedModel") -> None:
        self.cfg = cfg
        self.lm = lm

    @classmethod
    def context_problem(cls, cfg: MethodConfig, context_tokens: int) -> str | None:
        """Why settings ``cfg`` cannot run a context of ``context_tokens`` tokens (None: they can).

        Needs no model, so a sweep asks it for every context length of its grid before any run
        starts (e.g. a KV window not below the context)."""
        return None

    def validate(self, context_tokens: int) -> None:
        """Raise ConfigError if this method's settings make no sense for a context this long."""
        from harness.registry import ConfigError

        problem = self.context_problem(self.cfg, context_tokens)
        if problem:
            raise ConfigError(problem)

    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    def ingest(self, context: Context) -> None: ...

    @abstractmethod
    def answer(self, question: Question, max_new_tokens: int) -> Iterator[int]: ...

    @abstractmethod
    def state_bytes(self) -> int: ...

    def state_bytes_peak(self) -> int | None:
        """Largest state seen during the last ingest (None when the method does not track it)."""
        return None

    @abstractmethod
    def attended_tokens(self) -> int: ...

    def save_memory(self, folder: str | Path) -> dict[str, int]:
        """Write the memory built by the last ingest into ``folder``; return tensor bytes per part."""
        raise NotImplementedError(f"method '{self.name}' cannot save its memory")

    def load_memory(self, folder: str | Path) -> None:
        """Restore a memory written by ``save_memory`` (called after ``reset()``)."""
        raise NotImplementedError(f"method '{self.name}' cannot restore a memory")

    def extra_bytes(self) -> int:
        """Bytes of method parameters added to the backbone (e.g. an adapter); counted in weights_bytes."""
        return 0

    def extra_metrics(self) -> dict[str, Any]:
        """Method-specific per-sample numbers for the last answer (e.g. retrieval recall@k).

        Merged into the sample's row after the answer has been timed; never timed itself."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "variant": self.variant}

    @classmethod
    def trainer(cls) -> Any:
        """What ``python -m harness.train`` runs for this method: None (nothing to train), or an object
        with ``Config`` (the dataclass of the ``train`` config group) and
        ``run(lm, method_cfg, train_cfg, command) -> dict``."""
        return None


#: the method settings of a quantized KV cache (methods/_kvquant.py); only full_kv has them
KV_FIELDS = ("kv_quantization", "kv_group_size", "kv_residual")


def kv_unsupported(method: str, field: str) -> str:
    """The error for a KV-quantization setting given to a method that has none."""
    return (f"invalid setting 'method.{field}' for method '{method}': KV-cache quantization is an option of "
            f"method=full_kv only (e.g. method=full_kv method.kv_quantization=int8)")
