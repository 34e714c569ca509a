"""multi_session: memory across dated sessions of user-assistant dialogue (LoCoMo-style).

An episode is ``num_sessions`` dated sessions between a user and a coding assistant. Planted in
them: the repository's working rules (agent scenario: "In this repository, commit messages use the
imperative mood."), a fraction ``update_fraction`` of them changed in a later session; dated events
("Today we shipped version 2.3 of Quellam."); and two-fact chains ("My manager is Brisk." ...
"Brisk is based in Zorvia."). Filler exchanges (the user asks about the Python docs, the assistant
answers with prose) pad the sessions to the requested length, spread round-robin over sessions.

The context is one chunk per message (``chunking: message``; a session header "[Session 2,
14 May 2024]" opens each session's first message) or one chunk per session (``chunking: session``),
so message-level memory methods see the boundaries.

Questions, one Sample each (``questions_per_category`` per category, sharing the episode's context):

============= ======================================== ================== ==================
category      asks                                     answer             LoCoMo category
============= ======================================== ================== ==================
single_hop    a rule's current value                   the newest value   4 (single-hop)
temporal      when an event happened                   the session date   2 (temporal)
multi_hop     a chain's second fact via the first      the chain's end    1 (multi-hop)
unanswerable  a rule that was never stated             "not mentioned"    5 (adversarial)
============= ======================================== ================== ==================

Metric: SQuAD token F1 of the answer's first line (base models keep generating), maximised over the
accepted answers; ``unanswerable`` scores 1 when the answer contains "not mentioned" (LoCoMo's rule
for its adversarial category). The category is the slice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from harness.registry import check
from tasks import _split, haystack
from tasks._lengths import LengthsConfig, positive_int
from tasks._pack import ensure
from tasks._sessions_text import CHAINS, EVENTS, RULES, STYLE, VALUE_SHAPES
from tasks.base import Sample, Task
from tasks.metrics import contains, first_line, token_f1

MONTHS = "January February March April May June July August September October November December".split()
CATEGORIES = ("single_hop", "temporal", "multi_hop", "unanswerable")


@dataclass
class MultiSessionConfig(LengthsConfig):
    context_lengths: list[int] = field(default_factory=lambda: [2048])
    haystack: str = "prose"  # what the assistant's filler answers are made of
    num_sessions: int = 4
    num_rules: int = 4  # of 8 per split; the rest are asked as unanswerable
    update_fraction: float = 0.5
    num_events: int = 2
    num_chains: int = 1
    questions_per_category: int = 1
    chunking: str = "message"  # message | session
    max_new_tokens: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_int(self.num_sessions, "num_sessions", minimum=2)
        positive_int(self.questions_per_category, "questions_per_category")
        check(isinstance(self.num_rules, int) and 1 <= self.num_rules < len(RULES["eval"]), "task.num_rules", f"an integer from 1 to {len(RULES['eval']) - 1}", self.num_rules)
        check(isinstance(self.num_events, int) and 1 <= self.num_events <= len(EVENTS["eval"]), "task.num_events", f"an integer from 1 to {len(EVENTS['eval'])}", self.num_events)
        check(isinstance(self.num_chains, int) and 1 <= self.num_chains <= len(CHAINS["eval"]), "task.num_chains", f"an integer from 1 to {len(CHAINS['eval'])}", self.num_chains)
        check(isinstance(self.update_fraction, (int, float)) and 0 <= self.update_fraction <= 1, "task.update_fraction", "a number between 0 and 1", self.update_fraction)
        check(self.chunking in ("message", "session"), "task.chunking", "message or session", self.chunking)


def _date(d: dt.date) -> str:
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


class MultiSession(Task):
    name = "multi_session"
    Config = MultiSessionConfig
    metric = "f1"

    def samples(self, tokenizer: Any, seed: int) -> list[Sample]:
        out = []
        for n in self.cfg.context_lengths:
            for e in range(self.cfg.samples_per_cell):
                out += self._episode(tokenizer, _split.rng(self.name, self.cfg.split, seed, n, e), n, e)
        return out

    def _episode(self, tokenizer: Any, r, n: int, e: int) -> list[Sample]:
        cfg, st, S = self.cfg, STYLE[self.cfg.split], self.cfg.num_sessions
        taken: set[str] = set()
        day = dt.date(2023, 1, 1) + dt.timedelta(days=r.randrange(700))
        dates = []
        for _ in range(S):
            dates.append(_date(day))
            day += dt.timedelta(days=r.randint(1, 21))
        pairs: list[tuple[int, float, str, str]] = []  # (session, order in session, user text, assistant text)
        questions: dict[str, list[dict]] = {c: [] for c in CATEGORIES}

        def plant(session: int, text: str, key: float | None = None) -> str:
            pairs.append((session, r.random() if key is None else key, text, r.choice(st["ack"])))
            return text

        rules = RULES[cfg.split]
        planted = r.sample(range(len(rules)), cfg.num_rules)
        changed = set(r.sample(planted, round(cfg.update_fraction * cfg.num_rules)))
        for i in planted:
            stmt, q, values, extra = rules[i]
            if isinstance(values, str):
                old, new = (VALUE_SHAPES[values](_split.invent(r, cfg.split, taken)) for _ in range(2))
            else:
                old, new = r.sample(values, 2)
            if i in changed:
                a = r.randrange(S - 1)
                plant(a, r.choice(st["lead"]) + stmt.format(v=old))
                ev = plant(r.randrange(a + 1, S), r.choice(st["update"]) + stmt.format(v=new))
                value, stale = new, old
            else:
                ev = plant(r.randrange(S), r.choice(st["lead"]) + stmt.format(v=old))
                value, stale = old, None
            answers = [value] + [x.format(v=value) for x in extra]
            questions["single_hop"].append({"q": q, "answers": answers, "evidence": [ev], "updated": i in changed, "stale": stale})
        for i in r.sample(range(len(rules)), len(rules)):
            if i not in planted:
                questions["unanswerable"].append({"q": rules[i][1], "answers": ["not mentioned"], "evidence": []})
        for stmt, q in r.sample(EVENTS[cfg.split], cfg.num_events):
            fill = {"x": _split.invent(r, cfg.split, taken), "ver": f"{r.randint(1, 9)}.{r.randint(0, 20)}"}
            s = r.randrange(S)
            ev = plant(s, stmt.format(**fill))
            questions["temporal"].append({"q": q.format(**fill), "answers": [dates[s]], "evidence": [st["header"].format(k=s + 1, date=dates[s]).strip(), ev]})
        for first, second, q in r.sample(CHAINS[cfg.split], cfg.num_chains):
            fill = {k: _split.invent(r, cfg.split, taken) for k in "abc"}
            s1, s2 = sorted(r.randrange(S) for _ in range(2))
            k1, k2 = sorted(r.random() for _ in range(2))  # the first fact comes first within a session too
            ev = [plant(s1, r.choice(st["lead"]) + first.format(**fill), k1), plant(s2, second.format(**fill), k2)]
            questions["multi_hop"].append({"q": q.format(**fill), "answers": [fill["b"]], "evidence": ev})

        chunks = self._layout(tokenizer, r, n, pairs, dates)
        tokens = sum(haystack.count(tokenizer, c) for c in chunks)
        ensure(tokens, n, "task.context_lengths, task.num_rules, task.num_events and task.num_chains", "the planted messages do not fit; use longer contexts or plant fewer facts")
        singles = questions["single_hop"]
        # alternate changed and unchanged rules so both are asked when there are few questions
        questions["single_hop"] = [x for pair in zip([q for q in singles if q["updated"]], [q for q in singles if not q["updated"]]) for x in pair]
        questions["single_hop"] += [q for q in singles if q not in questions["single_hop"]]
        out = []
        for cat in CATEGORIES:
            for j, q in enumerate(questions[cat][: cfg.questions_per_category]):
                out.append(
                    Sample(
                        id=f"multi_session-{n}-{e}-{cat}-{j}",
                        chunks=list(chunks),
                        question=q["q"] + st["ask"],
                        answers=q["answers"],
                        answer_prefix=st["prefix"],
                        evidence=q["evidence"],
                        slices={"context_length": n},
                        category=cat,
                        context_id=f"multi_session-{n}-{e}",  # one episode, several questions
                        meta={"episode": f"{n}-{e}", "updated": q.get("updated", False), "stale": q.get("stale"), "split": cfg.split, "context_tokens": tokens},
                    )
                )
        return out

    def _layout(self, tokenizer: Any, r, n: int, pairs: list, dates: list[str]) -> list[str]:
        """Planted pairs + as many filler exchanges as fit, the last reply extended word by word."""
        cfg, st, S = self.cfg, STYLE[self.cfg.split], self.cfg.num_sessions
        cache: dict[str, int] = {}

        def cnt(text: str) -> int:
            if text not in cache:
                cache[text] = haystack.count(tokenizer, text)
            return cache[text]

        def render(items: list) -> list[str]:
            msgs: list[str] = []
            sessions: list[list[str]] = []
            for s in range(S):
                head = (st["intro"] if s == 0 else "\n") + st["header"].format(k=s + 1, date=dates[s])
                msgs = []
                for _, _, user, reply in sorted((p for p in items if p[0] == s), key=lambda p: p[1]):
                    msgs += [st["user"].format(text=user), st["assistant"].format(text=reply)]
                msgs = msgs or [""]
                msgs[0] = head + msgs[0]
                sessions.append(msgs)
            if cfg.chunking == "session":
                return ["".join(m) for m in sessions]
            return [m for ms in sessions for m in ms]

        def total(items: list) -> int:
            return sum(cnt(c) for c in render(items))

        stream = haystack.sentence_stream(cfg.haystack, r, 64)

        def sentences(first: int, k: int) -> str:
            return " ".join(stream[(first + j) % len(stream)] for j in range(k))

        # grow filler exchanges one at a time while they fit (per-message counts are cached)
        filler: list = []
        while True:
            i = len(filler)
            new = (i % S, r.random(), r.choice(st["filler"]), sentences(3 * i, r.randint(2, 4)))
            if total(pairs + filler + [new]) > n:
                break
            filler.append(new)

        def closest(head: list, pair: tuple, lead: str, words: list[str], least: int) -> list | None:
            """``head`` + ``pair`` whose reply is ``lead`` + the first w words, w >= least, closest to n."""

            def make(w: int) -> list:
                return head + [(*pair[:3], " ".join(([lead] if lead else []) + words[:w]))]

            if total(pairs + make(least)) > n:
                return None
            lo, hi = least, len(words)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if total(pairs + make(mid)) <= n else (lo, mid - 1)
            return make(min({lo, min(lo + 1, len(words))}, key=lambda w: abs(total(pairs + make(w)) - n)))

        # close the gap: a truncated copy of the exchange that did not fit, else a longer last reply
        more = sentences(3 * len(filler) + 4, 8).split()
        filler = closest(filler, new, "", new[3].split() + more, 1) or (closest(filler[:-1], filler[-1], filler[-1][3], more, 0) if filler else filler)
        return render(pairs + filler)

    def score(self, sample: Sample, prediction: str) -> float:
        answer = first_line(prediction)
        if sample.category == "unanswerable":
            return contains(answer, sample.answers)
        return token_f1(answer, sample.answers)
