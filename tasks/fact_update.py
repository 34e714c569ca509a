"""fact_update: conflict resolution over numbered facts (after MemoryAgentBench FactConsolidation).

An episode invents a small world: ``num_entities`` countries (each with two relations, e.g. capital
and leader) and as many people (each working in one of the countries). Its facts are numbered
lines "[12] The capital of Zorvia is Quell." spread evenly through a haystack; a fraction
``update_fraction`` of them is later overwritten by a higher-numbered line ("[57] The capital of
Zorvia is Brant."), ``update_distance`` fact lines after the original (null: a random later line).

Questions (one Sample each, ``questions_per_episode`` per episode, sharing the context):

- ``single_hop``: the current value of one relation ("What is the capital of Zorvia?");
- ``multi_hop``: two relations chained ("What is the capital of the country where Brisk works?"),
  so an update of either hop changes the answer.

Questions alternate between facts that were updated and facts that were not (slice ``updated``).
Metric: substring exact match (normalised answer contained in the prediction); ``meta["stale"]``
keeps the overwritten value, to count answers that recalled the old fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.registry import check
from tasks import _split, haystack
from tasks._lengths import LengthsConfig, positive_int
from tasks._pack import ensure
from tasks.base import Sample, Task
from tasks.metrics import contains

# place relations: (fact, question, prefix, multi-hop question, multi-hop prefix); one person relation
TEMPLATES = {
    "eval": {
        "intro": "Below is a knowledge pool of numbered facts. A fact with a larger number is newer and replaces any older fact it contradicts. Answer from the newest facts only.\n",
        "place": [
            ("The capital of {s} is {o}.", "What is the capital of {s}?", "The capital of {s} is",
             "What is the capital of the country where {p} works?", "The capital of the country where {p} works is"),
            ("The leader of {s} is {o}.", "Who is the leader of {s}?", "The leader of {s} is",
             "Who is the leader of the country where {p} works?", "The leader of the country where {p} works is"),
        ],
        "person": ("{s} works in {o}.", "Where does {s} work?", "{s} works in"),
    },
    "train": {
        "intro": "The passage holds numbered records. When two records disagree, the one with the higher number is the current truth.\n",
        "place": [
            ("The currency of {s} is the {o}.", "Which currency is used in {s}?", "The currency of {s} is the",
             "Which currency is used where {p} lives?", "The currency where {p} lives is the"),
            ("The longest river in {s} is the {o}.", "Which river is the longest in {s}?", "The longest river in {s} is the",
             "Which river is the longest where {p} lives?", "The longest river where {p} lives is the"),
        ],
        "person": ("{s} lives in {o}.", "In which country does {s} live?", "{s} lives in"),
    },
}


@dataclass
class FactUpdateConfig(LengthsConfig):
    context_lengths: list[int] = field(default_factory=lambda: [1024, 2048])
    num_entities: int = 4  # countries, and as many people: 3 facts per pair
    update_fraction: float = 0.5
    update_distance: int | None = None  # fact lines between a fact and its update; null: random
    questions_per_episode: int = 4  # alternating single_hop / multi_hop
    max_new_tokens: int = 12

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_int(self.num_entities, "num_entities", minimum=2)
        positive_int(self.questions_per_episode, "questions_per_episode")
        check(isinstance(self.update_fraction, (int, float)) and 0 <= self.update_fraction <= 1, "task.update_fraction", "a number between 0 and 1", self.update_fraction)
        if self.update_distance is not None:
            positive_int(self.update_distance, "update_distance", minimum=0)


@dataclass
class _Fact:
    line: str  # the text without its number
    subject: str
    relation: int  # index into the place relations; -1 = the person relation
    value: str
    order: float = 0.0  # sort key in the list of lines


class FactUpdate(Task):
    name = "fact_update"
    Config = FactUpdateConfig
    metric = "substring_exact_match"

    def samples(self, tokenizer: Any, seed: int) -> list[Sample]:
        cfg = self.cfg
        out = []
        for n in cfg.context_lengths:
            for e in range(cfg.samples_per_cell):
                r = _split.rng(self.name, cfg.split, seed, n, e, cfg.num_entities, cfg.update_fraction, cfg.update_distance)
                out += self._episode(tokenizer, r, n, e)
        return out

    def _episode(self, tokenizer: Any, r, n: int, e: int) -> list[Sample]:
        cfg, t = self.cfg, TEMPLATES[self.cfg.split]
        taken: set[str] = set()
        places = [_split.invent(r, cfg.split, taken) for _ in range(cfg.num_entities)]
        people = [_split.invent(r, cfg.split, taken) for _ in range(cfg.num_entities)]

        def fact(subject: str, rel: int, value: str) -> _Fact:
            tmpl = t["person"][0] if rel < 0 else t["place"][rel][0]
            return _Fact(tmpl.format(s=subject, o=value), subject, rel, value)

        base = [fact(p, k, _split.invent(r, cfg.split, taken)) for p in places for k in range(len(t["place"]))]
        base += [fact(p, -1, r.choice(places)) for p in people]
        r.shuffle(base)
        for j, f in enumerate(base):
            f.order = j
        updates: dict[int, _Fact] = {}  # index in base -> the newer fact
        for j in sorted(r.sample(range(len(base)), round(cfg.update_fraction * len(base)))):
            old = base[j]
            new = r.choice([p for p in places if p != old.value]) if old.relation < 0 else _split.invent(r, cfg.split, taken)
            u = fact(old.subject, old.relation, new)
            u.order = j + cfg.update_distance + 0.5 if cfg.update_distance is not None else r.uniform(j + 0.5, len(base))
            updates[j] = u
        lines = sorted(base + list(updates.values()), key=lambda f: f.order)
        numbered = {id(f): f"[{k + 1}] {f.line}" for k, f in enumerate(lines)}
        inserts = [((k + 0.5) / len(lines), numbered[id(f)]) for k, f in enumerate(lines)]
        built = haystack.build(tokenizer, cfg.haystack, n, inserts, r, head=t["intro"])
        ensure(built.tokens, n, "task.context_lengths and task.num_entities", "the facts do not fit; use longer contexts or fewer entities")

        def now(subject: str, rel: int) -> tuple[str, str | None, _Fact]:
            """(current value, overwritten value or None, newest fact)."""
            j = next(i for i, f in enumerate(base) if f.subject == subject and f.relation == rel)
            if j in updates:
                return updates[j].value, base[j].value, updates[j]
            return base[j].value, None, base[j]

        singles = [(f.subject, f.relation) for f in base]
        multis = [(p, k) for p in people for k in range(len(t["place"]))]
        r.shuffle(singles)
        r.shuffle(multis)
        out = []
        for q in range(cfg.questions_per_episode):
            hop = "single_hop" if q % 2 == 0 else "multi_hop"
            want_updated = (q // 2) % 2 == 0
            if hop == "single_hop":
                pool = singles
                info = [(s, rel, *now(s, rel)) for s, rel in pool]
                pick = next((x for x in info if (x[3] is not None) == want_updated), info[0] if info else None)
                if pick is None:
                    continue
                s, rel, answer, stale, newest = pick
                pool.remove((s, rel))
                question, prefix = (t["person"][1], t["person"][2]) if rel < 0 else (t["place"][rel][1], t["place"][rel][2])
                question, prefix, evidence, updated = question.format(s=s), prefix.format(s=s), [numbered[id(newest)]], stale is not None
            else:
                info = []
                for p, k in multis:
                    place, stale1, f1 = now(p, -1)
                    answer, stale2, f2 = now(place, k)
                    # the answer with the overwritten first hop is stale as well
                    old = now(stale1, k)[0] if stale1 is not None else stale2
                    info.append((p, k, answer, old, [numbered[id(f1)], numbered[id(f2)]], stale1 is not None or stale2 is not None))
                pick = next((x for x in info if x[5] == want_updated), info[0] if info else None)
                if pick is None:
                    continue
                p, k, answer, stale, evidence, updated = pick
                multis.remove((p, k))
                question, prefix = t["place"][k][3].format(p=p), t["place"][k][4].format(p=p)
            out.append(
                Sample(
                    id=f"fact_update-{n}-{e}-{q}",
                    chunks=[built.text],
                    question=question,
                    answers=[answer],
                    answer_prefix=prefix,
                    evidence=evidence,
                    slices={"context_length": n, "updated": updated},
                    category=hop,
                    context_id=f"fact_update-{n}-{e}",  # one episode, several questions
                    meta={"episode": f"{n}-{e}", "stale": stale, "split": cfg.split, "facts": len(lines), "updates": len(updates), "context_tokens": built.tokens},
                )
            )
        return out

    def score(self, sample: Sample, prediction: str) -> float:
        return contains(prediction, sample.answers)
