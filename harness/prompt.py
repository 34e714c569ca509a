"""Turn a task Sample into token ids, identically for every method.

Base models: ``[BOS] context "\\n\\n" question " " answer_prefix``.
Chat models: the tokenizer's chat template is rendered around a placeholder user message; the part
before the placeholder becomes ``Context.prefix_ids``, the context goes where the placeholder was,
and the question, the end of the user turn, the assistant header and the answer prefix follow.
"""

from __future__ import annotations

from typing import Any

from methods.base import Context, Question
from tasks.base import Sample

_SLOT = "\u0000MEMHARNESS_SLOT\u0000"


def _ids(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False).input_ids) if text else []


def template_parts(tok: Any, chat: bool) -> tuple[str, str]:
    """(head, tail) text around the user content. Base models: BOS only."""
    if not chat:
        return (tok.bos_token or "") if getattr(tok, "bos_token_id", None) is not None else "", ""
    rendered = tok.apply_chat_template([{"role": "user", "content": _SLOT}], add_generation_prompt=True, tokenize=False)
    head, _, tail = rendered.partition(_SLOT)
    return head, tail


def encode(sample: Sample, tok: Any, chat: bool) -> tuple[Context, Question]:
    head, tail = template_parts(tok, chat)
    prefix = _ids(tok, head)
    chunk_ids = [_ids(tok, c) for c in sample.chunks]
    qtext = "\n\n" + sample.question + tail
    if sample.answer_prefix:
        qtext += ("" if chat else " ") + sample.answer_prefix
    return (
        Context(prefix_ids=prefix, chunk_ids=chunk_ids, chunk_texts=list(sample.chunks)),
        Question(ids=_ids(tok, qtext), text=qtext, answer_prefix=sample.answer_prefix, evidence=list(sample.evidence)),
    )
