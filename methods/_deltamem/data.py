"""Training episodes for δ-mem, disjoint from the evaluation tasks by construction.

An episode is (write text, read text, answer text): the write segment (the history) is written into
the state, the read segment (question + answer prefix) is read with writes off, and the loss is on
the answer tokens only. Everything here differs from ``tasks/``: intro sentences, filler sentences
(not the RULER "grass is green" filler, not the pydoc prose), key wording ("access code", "locker
number", never "pass key"), key lengths (3–7 digits, so the 5-digit eval keys are not the only
shape), a person-name pool with no overlap with ``tasks.needle.NAMES``, and seeds drawn from their
own string namespace per split ("train" / "heldout"), never the tasks' "passkey/…", "needle/…".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

SPLITS = ("train", "heldout")
KINDS = ("code", "facts")

INTROS = [
    "Below is a long note. One line in it matters; the rest is padding. ",
    "Read the following log carefully, a detail will be asked about later. ",
    "This is a record of an ordinary day, with one thing worth keeping in mind. ",
    "",
]
FILLER = [
    "The river ran slowly past the old stone mill.", "A bus stopped at the corner and drove on.",
    "Rain tapped on the window for a while.", "Someone in the next room was humming a tune.",
    "The kettle clicked off in the kitchen.", "Leaves drifted across the empty car park.",
    "A dog barked twice somewhere down the street.", "The clock on the wall ticked on.",
    "Two gulls circled above the harbour.", "The printer in the hall warmed up with a whirr.",
    "A cyclist rang a bell on the bridge.", "Clouds moved in from the west by noon.",
    "The shop across the road opened its shutters.", "Steam rose from a cup left on the desk.",
]
CODE_TEMPLATES = [
    ("The access code is {key}. Do not forget it: {key}.", "What is the access code?", "The access code is"),
    ("Note this down, the vault combination is {key}.", "What is the vault combination?", "The vault combination is"),
    ("Your ticket number is {key}, printed at the top.", "What is the ticket number?", "The ticket number is"),
]
FACT_TEMPLATES = [
    ("{name}'s locker number is {key}.", "What is {name}'s locker number?", "{name}'s locker number is"),
    ("{name} lives at house number {key}.", "At what house number does {name} live?", "{name} lives at house number"),
]
# invented, disjoint from tasks.needle.NAMES
NAMES = ["Aldous", "Brisa", "Cormac", "Delphine", "Eamon", "Fenna", "Gideon", "Halima", "Isidro", "Jorunn", "Kasimir",
         "Leontine", "Matthias", "Nerys", "Osvaldo", "Perpetua", "Quillon", "Rosalind", "Sigurd", "Thessaly", "Ulric",
         "Valentina", "Wendell", "Ximena", "Yevgeny", "Zofia"]


@dataclass
class Episode:
    write: str  # the history
    read: str  # "\n\n" + question + " " + answer prefix (the harness prompt layout for base models)
    answer: str  # " " + key
    kind: str
    key: str
    facts: list[tuple[int, int]] = field(default_factory=list)  # character spans of the inserted fact sentences in ``write``


def _key(rng: random.Random, digits: tuple[int, int]) -> str:
    n = rng.randint(*digits)
    return str(rng.randrange(0 if n == 1 else 10 ** (n - 1), 10**n))


def episode(tok: Any, split: str, index: int, tokens: int, kind: str | None = None, seed: int = 0,
            digits: tuple[int, int] = (3, 7), place: float | None = None) -> Episode:
    """A seeded episode whose write segment is about ``tokens`` tokens long (exactly reproducible).

    ``digits``: (min, max) key length; ``place``: where the fact sentence(s) go among the filler, 0 = first,
    1 = last (right before the question), None = uniformly at random. Keys shorter than 3 digits and a
    fixed place are for curricula; the defaults give the original episodes, seed for seed."""
    if split not in SPLITS:
        raise ValueError(f"invalid split {split!r}; expected one of {', '.join(SPLITS)}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"invalid kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not (1 <= digits[0] <= digits[1]):
        raise ValueError(f"invalid digits {digits!r}; expected (min, max) with 1 <= min <= max")
    if place is not None and not 0 <= place <= 1:
        raise ValueError(f"invalid place {place!r}; expected a number in [0, 1] or None")
    extra = "" if (tuple(digits), place) == ((3, 7), None) else f"/{digits[0]}-{digits[1]}/{place}"
    rng = random.Random(f"deltamem-train-data/{split}/{seed}/{tokens}/{index}{extra}")
    kind = kind or rng.choice(KINDS)
    if kind == "code":
        t, q, p = rng.choice(CODE_TEMPLATES)
        key = _key(rng, digits)
        inserts, fill = [t.format(key=key)], {}
    else:
        names = rng.sample(NAMES, rng.randint(2, 4))
        t, q, p = rng.choice(FACT_TEMPLATES)
        keys = [_key(rng, digits) for _ in names]
        inserts = [t.format(name=n, key=k) for n, k in zip(names, keys)]
        j = rng.randrange(len(names))
        key, fill = keys[j], {"name": names[j]}
    intro = rng.choice(INTROS)
    budget = max(tokens - len(tok(intro + " ".join(inserts), add_special_tokens=False).input_ids), 0)
    filler: list[str] = []
    n = 0
    while n < budget:
        s = rng.choice(FILLER)
        filler.append(s)
        n += len(tok(" " + s, add_special_tokens=False).input_ids)
    at = None if place is None else round(place * len(filler))
    for ins in inserts:
        filler.insert(rng.randint(0, len(filler)) if at is None else at, ins)
        at = None if at is None else at + 1
    spans, pos = [], len(intro)
    for s in filler:  # character spans of the facts, for per-token measurements (β on facts vs filler)
        if s in inserts:
            spans.append((pos, pos + len(s)))
        pos += len(s) + 1
    return Episode(write=intro + " ".join(filler), read="\n\n" + q.format(**fill) + " " + p.format(**fill), answer=" " + key,
                   kind=kind, key=key, facts=spans)


def describe() -> dict[str, Any]:
    return {
        "generator": "methods._deltamem.data.episode",
        "kinds": {"code": "one access-code/combination/ticket number in filler", "facts": "2-4 name->number facts, one asked"},
        "key_digits": "3-7", "names": len(NAMES), "filler_sentences": len(FILLER),
        "disjoint_from": "tasks.passkey / tasks.needle templates, fillers, names and seed namespaces",
    }
