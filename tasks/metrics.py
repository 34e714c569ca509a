"""Per-sample answer metrics, each returning a score in [0, 1].

RULER reports ``string_match_all`` / ``string_match_part`` as percentages (x100) averaged over
samples; here every metric is a per-sample fraction in [0, 1] like the other tasks, so a RULER
score of 85.6 (its "effective length" threshold) is 0.856 in our summaries.

``normalize`` is SQuAD's answer normalisation (lower case, no punctuation, no articles, single
spaces); ``token_f1`` is SQuAD/LoCoMo token F1 on top of it (without LoCoMo's Porter stemming).
"""

from __future__ import annotations

import re
from collections import Counter

from tasks.base import normalize

NAMES = ("contains", "exact", "f1", "string_match_all", "string_match_part")


def _ruler_clean(prediction: str) -> str:
    # RULER's postprocess_pred: control characters become newlines, then strip
    return re.sub(r"[\x00-\x1f]", "\n", prediction).strip()


def string_match_all(prediction: str, references: list[str]) -> float:
    """RULER: the fraction of reference strings found in the prediction (case-insensitive)."""
    if not references:
        return 0.0
    p = _ruler_clean(prediction).lower()
    return sum(r.lower() in p for r in references) / len(references)


def string_match_part(prediction: str, references: list[str]) -> float:
    """RULER: 1 if any reference string is found in the prediction (case-insensitive)."""
    p = _ruler_clean(prediction).lower()
    return float(any(r.lower() in p for r in references))


def contains(prediction: str, answers: list[str]) -> float:
    """Substring exact match after normalisation: 1 if any normalised answer occurs in the normalised
    prediction as whole words ("quell" does not match inside "quellam")."""
    p = f" {normalize(prediction)} "
    return float(any(normalize(a) and f" {normalize(a)} " in p for a in answers))


def exact(prediction: str, answers: list[str]) -> float:
    """1 if the normalised prediction equals any normalised answer."""
    p = normalize(prediction)
    return float(any(p == normalize(a) for a in answers))


def leading(prediction: str, answers: list[str]) -> float:
    """Exact match of the prediction's first words: 1 if the normalised prediction starts with a
    whole normalised answer (what a greedy completion that keeps talking afterwards produces)."""
    words = normalize(prediction).split()
    for a in answers:
        aw = normalize(a).split()
        if aw and words[: len(aw)] == aw:
            return 1.0
    return 0.0


def token_f1(prediction: str, answers: list[str]) -> float:
    """SQuAD token F1, maximised over the accepted answers. Two empty strings score 1."""
    best = 0.0
    p = normalize(prediction).split()
    for a in answers:
        g = normalize(a).split()
        if not p or not g:
            best = max(best, float(p == g))
            continue
        same = sum((Counter(p) & Counter(g)).values())
        if same:
            prec, rec = same / len(p), same / len(g)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def first_line(prediction: str) -> str:
    """The answer part of a base-model completion: text up to the first non-empty line's end."""
    for line in prediction.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def by_name(name: str):
    """The metric function called ``name`` (one of ``NAMES``)."""
    return {"contains": contains, "exact": exact, "f1": token_f1, "string_match_all": string_match_all, "string_match_part": string_match_part}[name]
