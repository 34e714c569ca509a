"""Turn a task Sample into token ids, identically for every method, and find where an answer ends.

Base models: ``[BOS] context "\\n\\n" question " " answer_prefix`` (no space when the prefix
starts with whitespace, e.g. ``"\\nAnswer:"``); a sample without an answer
prefix is framed by ``task.template`` instead (default ``"Question: {question}\\nAnswer:"``), so
the model answers rather than continues the question: ``[BOS] context "\\n\\n" template``.
Chat models: the tokenizer's chat template is rendered around a placeholder user message; the part
before the placeholder becomes ``Context.prefix_ids``, the context goes where the placeholder was,
and the question, the end of the user turn, the assistant header and the answer prefix (if any)
follow. ``task.template`` does not apply there: the chat template already asks for an answer.

``task.stop`` lists strings that end an answer (a newline for short-answer tasks): the harness stops
pulling tokens once the decoded answer contains one, after any leading whitespace, and cuts the
prediction there (see ``find_stop``).
"""

from __future__ import annotations

from typing import Any, Sequence

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


def prompt_kind(sample: Sample, chat: bool, template: str | None) -> str:
    """How the question is framed: "answer_prefix", "chat", "template" or "bare"."""
    if sample.answer_prefix:
        return "answer_prefix"
    if chat:
        return "chat"
    return "template" if template else "bare"


def question_text(sample: Sample, chat: bool, template: str | None = None) -> str:
    """The text after the context (before the chat tail is added in ``encode``)."""
    if prompt_kind(sample, chat, template) == "template":
        return "\n\n" + template.format(question=sample.question)
    return "\n\n" + sample.question


def encode(sample: Sample, tok: Any, chat: bool, template: str | None = None) -> tuple[Context, Question]:
    """``template``: the task's ``template`` (None: bare question, as without a task config)."""
    head, tail = template_parts(tok, chat)
    prefix = _ids(tok, head)
    chunk_ids = [_ids(tok, c) for c in sample.chunks]
    qtext = question_text(sample, chat, template) + tail
    if sample.answer_prefix:  # joined by a space, unless it opens with its own whitespace ("\nAnswer:")
        qtext += ("" if chat or sample.answer_prefix[:1].isspace() else " ") + sample.answer_prefix
    return (
        Context(prefix_ids=prefix, chunk_ids=chunk_ids, chunk_texts=list(sample.chunks)),
        Question(ids=_ids(tok, qtext), text=qtext, answer_prefix=sample.answer_prefix, evidence=list(sample.evidence)),
    )


def find_stop(text: str, stop: Sequence[str]) -> int | None:
    """Index in ``text`` where the answer ends: the earliest stop string that starts after the
    leading whitespace (a model often opens with a newline before it answers), or None."""
    start = len(text) - len(text.lstrip())
    hits = [i for s in stop if (i := text.find(s, start)) >= 0]
    return min(hits) if hits else None


def cut(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) its first stop string."""
    i = find_stop(text, stop)
    return text if i is None else text[:i]
