"""Haystacks sized in the model's own tokens, with texts inserted at sentence boundaries.

``noise`` is the RULER/Landmark filler; ``prose`` is real English from ``pydoc_data.topics`` (ships
with CPython, PSF licence), split into sentences. Sizing is exact to the tokenizer: sentences are
added until the joined context reaches the target, then trimmed to the closest length.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

NOISE = ["The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again."]
KINDS = ("noise", "prose")


@lru_cache(maxsize=1)
def prose_sentences() -> tuple[str, ...]:
    from pydoc_data.topics import topics

    out: list[str] = []
    for key in sorted(topics):
        text = re.sub(r"\s+", " ", topics[key])
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
            s = s.strip()
            # keep sentence-like prose, skip code listings and grammar rules
            if 40 <= len(s) <= 300 and s[-1] in ".!?" and not re.search(r"[{}<>|=]{2}|::=|>>>", s):
                out.append(s)
    return tuple(out)


def sentence_stream(kind: str, rng: random.Random, n: int) -> list[str]:
    if kind == "noise":
        return [NOISE[i % len(NOISE)] for i in range(n)]
    pool = prose_sentences()
    start = rng.randrange(len(pool))
    return [pool[(start + i) % len(pool)] for i in range(n)]


def count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


@dataclass
class Built:
    text: str
    tokens: int
    positions: list[int]  # token offset where each inserted text starts (approximate to +-1 token)


def build(tokenizer: Any, kind: str, target: int, inserts: list[tuple[float, str]], rng: random.Random, head: str = "", tail: str = "") -> Built:
    """Return ``head + haystack-with-inserts + tail`` of ~``target`` tokens.

    ``inserts`` are (depth in [0, 1], text); each goes at the sentence boundary at or before its depth.
    """
    if kind not in KINDS:
        raise ValueError(f"invalid value for 'task.haystack': {kind!r}; expected one of {', '.join(KINDS)}")
    fixed = count(tokenizer, head + tail + " ".join(t for _, t in inserts))
    budget = max(target - fixed, 0)
    # per-sentence counts are close to the joined count; refine against the real join below
    pool = sentence_stream(kind, rng, max(16, budget // 4 + 16))
    per = [count(tokenizer, " " + s) for s in pool]
    n, acc = 0, 0
    while n < len(pool) and acc + per[n] <= budget:
        acc += per[n]
        n += 1

    def assemble(n: int, words: int = 0) -> tuple[str, list[int]]:
        sents = pool[:n]
        cum = [0]
        for c in per[:n]:
            cum.append(cum[-1] + c)
        placed: dict[int, list[str]] = {}
        for depth, text in sorted(inserts, key=lambda x: x[0]):
            want = depth * (cum[-1] if cum else 0)
            idx = max(i for i in range(n + 1) if cum[i] <= want + 1e-9) if n else 0
            placed.setdefault(idx, []).append(text)
        parts: list[str] = []
        for i in range(n + 1):
            parts.extend(placed.get(i, []))
            if i < n:
                parts.append(sents[i])
        if words and n < len(pool):
            parts.append(" ".join(pool[n].split()[:words]))  # a partial last sentence closes the gap
        return head + " ".join(parts) + tail, sorted(placed)

    text, _ = assemble(n)
    tokens = count(tokenizer, text)
    while tokens > target and n > 0:
        n -= 1
        text, _ = assemble(n)
        tokens = count(tokenizer, text)
    while n < len(pool):
        cand, _ = assemble(n + 1)
        c = count(tokenizer, cand)
        if c > target:
            break
        n, text, tokens = n + 1, cand, c
    # fill the remaining gap word by word from the next sentence (prose sentences are long)
    if n < len(pool) and tokens < target:
        best = (abs(tokens - target), 0, text, tokens)
        for w in range(1, len(pool[n].split())):
            cand, _ = assemble(n, w)
            c = count(tokenizer, cand)
            if abs(c - target) < best[0]:
                best = (abs(c - target), w, cand, c)
            if c >= target:
                break
        text, tokens = best[2], best[3]
    positions = []
    for _, ins in inserts:
        at = text.find(ins)
        positions.append(count(tokenizer, text[:at]) if at >= 0 else -1)
    return Built(text=text, tokens=tokens, positions=positions)
