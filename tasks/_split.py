"""Train/eval splits with disjoint entities, templates and seeds.

δ-mem adapters are trained on generated samples, so evaluation must stay held out. Three rules
keep the splits apart:

1. **Entities**: every invented word (names, keys, variables, places) belongs to exactly one split
   by a stable hash (``crc32`` parity, see ``side``). Generators draw by rejection, so the two pools
   are disjoint by construction and as large as needed.
2. **Templates**: each task keeps its sentence templates in a ``{"eval": [...], "train": [...]}``
   table with no sentence shared; a test checks that.
3. **Seeds**: every RNG seed string starts with ``<task>/<split>/<seed>``.
"""

from __future__ import annotations

import random
import uuid
import zlib
from typing import Iterable

from harness.registry import check

SPLITS = ("eval", "train")

_ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "qu", "r", "s", "st", "t", "th", "v", "w", "z", "sh", "tr", "kr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y"]
_CODAS = ["", "", "", "n", "r", "l", "s", "th", "x", "m", "nd", "rk", "v"]

# RULER-style word keys ("adjective-noun"); a key's split is the hash of the whole key
ADJECTIVES = """able acid aged airy amber ample angry arid ashen astral azure bald balmy bent bitter
bland blunt bold brash brave breezy brief brisk broad bronze bumpy busy calm candid chalky cheery
chilly civic clever cloudy coarse cosmic cozy crisp curly damp dapper dark dense dizzy drowsy dusty
eager early earthy elated elfin empty epic faint fancy feral fiery final flaky fluffy foggy frail
frank fresh frosty fuzzy giant gentle giddy glossy golden grand grassy greasy gritty grumpy hasty
hazy hollow humble husky icy idle inky jolly jumpy keen kind lanky late lavish lazy lean leafy
lofty loud lucky lunar lush mellow merry misty modest moody mossy muddy murky narrow neat nimble
noble odd oily olive open pale petite plain plush polar proud quaint quick quiet rapid regal rosy
rough royal rusty sandy savvy scarlet shady shaggy sharp shiny silent silky sleek slim smoky snug
solar sour spicy stale steep stormy sturdy sunny swift tame tangy tart tawny tender tidy tiny""".split()
NOUNS = """acorn anchor anvil apron arrow attic badge bagel ballad banjo barrel basket beacon beetle
bellows bison blanket bonnet bottle bramble bucket buckle button cabin cactus camel candle canoe
canyon carrot castle cellar cherry chimney cider circus clover cobweb comet compass copper cradle
crayon cricket crown cymbal daisy dagger dolphin donkey dragon drum easel ember falcon feather
fern ferry fiddle flannel flute fossil fountain galaxy garnet gazebo geyser ginger glacier goblet
gravel gutter hammock harbor harp hazel helmet heron hickory hornet igloo island ivory jacket
jasmine jigsaw kettle kernel kiosk ladder lantern lemon lilac lizard locket magnet mango maple
marble meadow mitten monsoon mortar mussel nectar nutmeg oyster paddle pebble pepper pillow
pistol plaza pocket pollen puddle quartz quill rafter raisin ribbon riddle rocket saddle sapling
scarf sextant shovel sparrow spindle sponge squash tablet teapot thimble thistle tulip tunnel
turnip velvet violin walnut wagon whistle willow wizard yarn zephyr""".split()


def check_split(split: str) -> None:
    check(split in SPLITS, "task.split", "eval or train", split)


def side(word: str) -> str:
    """The split an entity belongs to: a stable hash, independent of Python's hash seed."""
    return SPLITS[zlib.crc32(word.lower().encode()) & 1]


def rng(task: str, split: str, seed: int, *parts: object) -> random.Random:
    """A generator seeded by a string that always includes the task and the split."""
    return random.Random("/".join(str(p) for p in (task, split, seed, *parts)))


def draw(r: random.Random, split: str, make, taken: set[str] | None = None, tries: int = 10_000) -> str:
    """Draw ``make(r)`` until the result belongs to ``split`` and is not in ``taken`` (then add it)."""
    taken = set() if taken is None else taken
    for _ in range(tries):
        w = make(r)
        if side(w) == split and w not in taken:
            taken.add(w)
            return w
    raise ValueError(f"could not draw a new {split} entity after {tries} tries (pool exhausted; {len(taken)} in use)")


def invent(r: random.Random, split: str, taken: set[str] | None = None, syllables: tuple[int, int] = (2, 3)) -> str:
    """A new pronounceable invented name ("Zorvia", "Quellam") from ``split``'s half of the space."""

    def make(r: random.Random) -> str:
        n = r.randint(*syllables)
        w = "".join(r.choice(_ONSETS) + r.choice(_VOWELS) for _ in range(n)) + r.choice(_CODAS)
        return w.capitalize()

    return draw(r, split, make, taken)


def word_key(r: random.Random, split: str, taken: set[str] | None = None) -> str:
    """A RULER-style "adjective-noun" key."""
    return draw(r, split, lambda r: f"{r.choice(ADJECTIVES)}-{r.choice(NOUNS)}", taken)


def uuid_key(r: random.Random, split: str, taken: set[str] | None = None) -> str:
    return draw(r, split, lambda r: str(uuid.UUID(int=r.getrandbits(128), version=4)), taken)


def letters(r: random.Random, split: str, n: int = 5, taken: set[str] | None = None) -> str:
    """An upper-case variable name such as "QWXPL" (RULER variable tracking)."""
    return draw(r, split, lambda r: "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(n)), taken)


def number(r: random.Random, digits: int, taken: set[str] | None = None) -> str:
    """A random ``digits``-digit number (values are not entities, so they are not split)."""
    taken = set() if taken is None else taken
    while True:
        v = str(r.randrange(10 ** (digits - 1), 10**digits))
        if v not in taken:
            taken.add(v)
            return v


def disjoint(table: dict[str, Iterable]) -> bool:
    """True when no template appears in both splits (used by the split tests)."""
    return not (set(map(str, table["eval"])) & set(map(str, table["train"])))
