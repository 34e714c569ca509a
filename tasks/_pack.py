"""Sizing helpers for contexts that are not a plain haystack (lists of needles, dialogue turns).

Every generated context must land within ``TOLERANCE`` of the requested length in the model's own
tokens. ``fit`` finds how many generated units fit, ``top_up`` closes the last gap with filler
words, and ``ensure`` turns an impossible request (the facts alone overflow the context) into a
ConfigError that names the fields to change instead of silently returning a longer context.
"""

from __future__ import annotations

from typing import Any, Callable

from harness.registry import ConfigError
from tasks.haystack import NOISE, count

TOLERANCE = 0.02


def fit(tokenizer: Any, target: int, render: Callable[[int], str], hi: int) -> int:
    """The largest ``n`` in [0, hi] with ``count(render(n)) <= target`` (counts grow with n)."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(tokenizer, render(mid)) <= target:
            lo = mid
        else:
            hi = mid - 1
    return lo


def top_up(tokenizer: Any, before: str, after: str, target: int, words: list[str] | None = None) -> tuple[str, int]:
    """Insert filler words between ``before`` and ``after`` to get closest to ``target`` tokens.

    Returns ``(text, tokens)``. Filler is the RULER noise sentences unless ``words`` is given.
    """
    pool = words or " ".join(NOISE * 64).split()
    text = before + after
    best = (abs(count(tokenizer, text) - target), text)
    lo, hi = 0, len(pool)
    # binary search the number of words, then look at the neighbours for the closest count
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(tokenizer, before + " " + " ".join(pool[:mid]) + after) <= target:
            lo = mid
        else:
            hi = mid - 1
    for k in (lo, lo + 1):
        if 0 < k <= len(pool):
            cand = before + " " + " ".join(pool[:k]) + after
            c = count(tokenizer, cand)
            if abs(c - target) < best[0]:
                best = (abs(c - target), cand)
    return best[1], count(tokenizer, best[1])


def trim_words(tokenizer: Any, text: str, target: int) -> tuple[str, int]:
    """Cut ``text`` at a word boundary to the closest count to ``target`` tokens (never empty)."""
    words = text.split(" ")
    lo, hi = 1, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(tokenizer, " ".join(words[:mid])) <= target:
            lo = mid
        else:
            hi = mid - 1
    best = None
    for k in (lo, lo + 1):
        if 0 < k <= len(words):
            cand = " ".join(words[:k])
            c = count(tokenizer, cand)
            if best is None or abs(c - target) < abs(best[1] - target):
                best = (cand, c)
    return best


def ensure(tokens: int, target: int, fields: str, hint: str) -> None:
    """Raise a ConfigError when ``tokens`` is not within TOLERANCE of ``target``."""
    if abs(tokens - target) > TOLERANCE * target:
        raise ConfigError(f"cannot build a {target}-token context (got {tokens} tokens) with these values of {fields}; {hint}")
