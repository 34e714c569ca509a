"""oracle: the answer's evidence, and nothing else, in front of the question.

This is a **ceiling, not a memory method**: it reads ``Question.evidence`` (the strings that answer
the question, which only this method may look at) and prompts the backbone with
``prefix + evidence + question``. It is what a perfect retriever would achieve with a perfectly
short context, so a retrieval method's gap to it splits into "retrieved the wrong text" (see rag's
``retrieval_recall_at_k``) and "the backbone could not use the right text".

Ingest keeps only the prompt header (BOS / chat preamble, a few ids); nothing of the context. A
sample without evidence is answered from the header and question alone (like no_memory), and
``extra_metrics()`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from methods._lm import greedy
from methods.base import Context, Method, MethodConfig, Question


@dataclass
class OracleConfig(MethodConfig):
    separator: str = " "  # joins several evidence strings


class Oracle(Method):
    name = "oracle"
    Config = OracleConfig
    variant = "ceiling"

    def __init__(self, cfg: OracleConfig, lm: Any) -> None:
        super().__init__(cfg, lm)
        self.reset()

    def reset(self) -> None:
        self.prefix = np.zeros(0, dtype=np.int32)
        self._attended, self._n_evidence = 0, None

    def ingest(self, context: Context) -> None:
        self.prefix = np.asarray(context.prefix_ids, dtype=np.int32)

    def state_bytes(self) -> int:
        return int(self.prefix.nbytes)

    def state_bytes_peak(self) -> int:
        return self.state_bytes()

    def answer(self, question: Question, max_new_tokens: int) -> Iterator[Any]:
        from transformers import DynamicCache

        text = self.cfg.separator.join(question.evidence)
        evidence = list(self.lm.tokenizer(text, add_special_tokens=False).input_ids) if text else []
        ids = self.prefix.tolist() + evidence + list(question.ids)
        self._attended, self._n_evidence = len(ids), len(question.evidence)
        yield from greedy(self.lm.model, DynamicCache(config=self.lm.model.config), ids, max_new_tokens, self.lm.eos_ids, self.cfg.chunk_size)

    def attended_tokens(self) -> int:
        return self._attended

    def extra_metrics(self) -> dict[str, Any]:
        if self._n_evidence == 0:
            return {"oracle_evidence": 0, "oracle_evidence_reason": "the sample carries no evidence; answered closed-book"}
        return {"oracle_evidence": self._n_evidence}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "ceiling": True, "note": "reads Question.evidence; an upper bound for retrieval, not a memory method"}
