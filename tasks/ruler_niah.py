"""ruler_niah: the eight needle-in-a-haystack variants of NVIDIA/RULER, scored by string_match_all.

Needle: "One of the special magic {numbers|uuids} for {key} is: {value}."; query: "What are all the
special magic {type} for {key} mentioned in the provided text?". Variants (as in RULER's
``synthetic.yaml``):

=========== ========= ====== ====== ==================================================
variant     haystack  key    value  needles
=========== ========= ====== ====== ==================================================
single_1    noise     word   number 1
single_2    prose     word   number 1
single_3    prose     word   uuid   1
multikey_1  prose     word   number 4 keys, 1 asked (3 distractors)
multikey_2  needles   word   number 1 asked; the haystack is all distractor needles
multikey_3  needles   uuid   uuid   same, uuid keys and values
multivalue  prose     word   number 4 values for the asked key (all must be recalled)
multiquery  prose     word   number 4 keys, all asked (all values must be recalled)
=========== ========= ====== ====== ==================================================

The grid's ``depth`` places the first answer needle; other needles go at seeded random depths
(RULER draws every needle's depth at random). RULER's "essay" haystack (Paul Graham) is our
``prose`` (CPython docs); ``task.haystack`` may override noise/prose for the non-needle variants.
A needle haystack is topped up with a few noise words to hit the length exactly.

``answers`` holds one complete reference answer (all values, comma-separated) so that the reference
scores 1; the scored reference strings are ``meta["references"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.registry import check
from tasks import _split, haystack
from tasks._grid import GridConfig
from tasks._pack import ensure, fit, top_up
from tasks.base import Sample, Task
from tasks.metrics import string_match_all

#: variant -> (haystack, key kind, value kind, keys inserted, values per key, keys asked, max_new_tokens)
VARIANTS: dict[str, tuple[str, str, str, int, int, int, int]] = {
    "single_1": ("noise", "word", "number", 1, 1, 1, 16),
    "single_2": ("prose", "word", "number", 1, 1, 1, 16),
    "single_3": ("prose", "word", "uuid", 1, 1, 1, 40),
    "multikey_1": ("prose", "word", "number", 4, 1, 1, 16),
    "multikey_2": ("needles", "word", "number", 1, 1, 1, 16),
    "multikey_3": ("needles", "uuid", "uuid", 1, 1, 1, 40),
    "multivalue": ("prose", "word", "number", 1, 4, 1, 64),
    "multiquery": ("prose", "word", "number", 4, 1, 4, 64),
}

# eval is RULER's wording verbatim; train is a paraphrase with no sentence in common
TEMPLATES = {
    "eval": {
        "intro": "Some special magic {type} are hidden within the following text. Make sure to memorize it. I will quiz you about the {type} afterwards.\n",
        "needle": "One of the special magic {type} for {key} is: {value}.",
        "question": "What are all the special magic {type} for {query} mentioned in the provided text?",
        "prefix": "The special magic {type} for {query} mentioned in the provided text are",
    },
    "train": {
        "intro": "Several secret {type} are buried in the passage below. Keep them in mind; questions about the {type} follow.\n",
        "needle": "Among the hidden {type} attached to {key} is {value}.",
        "question": "Which hidden {type} are attached to {query} in the passage?",
        "prefix": "The hidden {type} attached to {query} are",
    },
}


@dataclass
class RulerNiahConfig(GridConfig):
    variant: str = "single_1"
    context_lengths: list[int] = field(default_factory=lambda: [1024, 2048])
    depths: list[float] = field(default_factory=lambda: [10, 50, 90])
    haystack: str | None = None  # null: the variant's own (see the table above)
    max_new_tokens: int | None = None  # null: 16 for numbers, 40 for uuids, 64 for 4 values
    split: str = "eval"
    stop: list[str] = field(default_factory=list)  # RULER scores the whole output; answers may list values over lines

    def __post_init__(self) -> None:
        check(self.variant in VARIANTS, "task.variant", f"one of {', '.join(VARIANTS)}", self.variant)
        own, *_, max_new = VARIANTS[self.variant]
        if self.max_new_tokens is None:
            self.max_new_tokens = max_new
        if self.haystack is None:
            self.haystack = own
        if own == "needles" or self.haystack == "needles":
            check(self.haystack == own, "task.haystack", f"null or 'needles' for variant {self.variant}", self.haystack)
            self.haystack = "noise"  # the grid checks noise|prose; restored below
            super().__post_init__()
            self.haystack = "needles"
        else:
            super().__post_init__()
        _split.check_split(self.split)


class RulerNiah(Task):
    name = "ruler_niah"
    Config = RulerNiahConfig
    metric = "string_match_all"

    def samples(self, tokenizer: Any, seed: int) -> list[Sample]:
        cfg = self.cfg
        _, key_kind, value_kind, n_keys, n_values, n_asked, _ = VARIANTS[cfg.variant]
        vtype = "numbers" if value_kind == "number" else "uuids"
        t = {k: v.replace("{type}", vtype) for k, v in TEMPLATES[cfg.split].items()}
        out = []
        for n, depth, i in cfg.cells():
            r = _split.rng(self.name, cfg.split, seed, cfg.variant, n, depth, i)
            taken: set[str] = set()
            values_taken: set[str] = set()

            def key() -> str:
                return _split.word_key(r, cfg.split, taken) if key_kind == "word" else _split.uuid_key(r, cfg.split, taken)

            def value() -> str:
                return _split.number(r, 7, values_taken) if value_kind == "number" else _split.uuid_key(r, cfg.split, values_taken)

            keys = [key() for _ in range(n_keys)]
            values = {k: [value() for _ in range(n_values)] for k in keys}
            needles = [t["needle"].format(key=k, value=v) for k in keys for v in values[k]]
            asked = keys[:n_asked]
            refs = [v for k in asked for v in values[k]]
            evidence = [t["needle"].format(key=k, value=v) for k in asked for v in values[k]]
            query = asked[0] if len(asked) == 1 else ", ".join(asked[:-1]) + ", and " + asked[-1]
            if cfg.haystack == "needles":
                text, tokens = self._needle_haystack(tokenizer, n, depth / 100, needles[0], key, value, t, r)
            else:
                inserts = [(depth / 100, needles[0])] + [(r.random(), s) for s in needles[1:]]
                built = haystack.build(tokenizer, cfg.haystack, n, inserts, r, head=t["intro"])
                text, tokens = built.text, built.tokens
            ensure(tokens, n, "task.context_lengths and task.variant", "use longer contexts")
            out.append(
                Sample(
                    id=f"ruler_niah-{cfg.variant}-{n}-{depth:g}-{i}",
                    chunks=[text],
                    question=t["question"].format(query=query),
                    answers=[", ".join(refs)],
                    answer_prefix=t["prefix"].format(query=query),
                    evidence=evidence,
                    slices={"context_length": n, "depth": depth},
                    meta={"references": refs, "variant": cfg.variant, "split": cfg.split, "context_tokens": tokens, "needle_char": text.find(needles[0])},
                )
            )
        return out

    def _needle_haystack(self, tokenizer: Any, n: int, depth: float, needle: str, key, value, t: dict, r) -> tuple[str, int]:
        """RULER's needle haystack: distractor needles (new keys) around the asked one, one per line."""
        per = max(1, haystack.count(tokenizer, needle))
        distractors = [t["needle"].format(key=key(), value=value()) for _ in range(n // max(1, per // 2) + 2)]

        def render(m: int) -> str:
            lines = distractors[:m]
            lines.insert(round(depth * m), needle)
            return t["intro"] + "\n".join(lines)

        m = fit(tokenizer, n, render, len(distractors))
        return top_up(tokenizer, render(m), "", n)

    def score(self, sample: Sample, prediction: str) -> float:
        return string_match_all(prediction, sample.meta.get("references", sample.answers))
