"""Properties shared by every generated recall task: seeded, sized to 2% in model tokens, references
score 1 and empty answers 0, registry/YAML plumbing, and train/eval splits that share no entity and
no template."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.registry import ConfigError, build_config
from harness.tiny import byte_tokenizer
from tasks import REGISTRY as TASKS
from tasks import _sessions_text, _split
from tasks import fact_update, kv_recall, ruler_niah, variable_tracking
from tasks.haystack import count
from tasks.ruler_niah import VARIANTS

OURS = ["ruler_niah", "variable_tracking", "kv_recall", "fact_update", "multi_session", "jsonl"]

# small configs (byte tokenizer: one token per byte, so contexts must hold the facts in bytes)
CASES = [("ruler_niah", {"variant": v, "context_lengths": [1024], "depths": [0, 50, 100]}) for v in VARIANTS] + [
    ("ruler_niah", {"variant": "single_1", "context_lengths": [700, 1500], "depths": [30], "samples_per_cell": 2}),
    ("variable_tracking", {"context_lengths": [1024], "samples_per_cell": 2, "num_chains": 2}),
    ("variable_tracking", {"context_lengths": [600], "num_hops": 0, "haystack": "prose"}),
    ("kv_recall", {"context_length": 1024, "num_facts": [4, 16]}),
    ("kv_recall", {"context_length": 1024, "num_facts": 8, "layout": "block", "haystack": "prose", "num_queries": 8}),
    ("fact_update", {"context_lengths": [1024, 1536]}),
    ("fact_update", {"context_lengths": [2048], "update_fraction": 1.0, "update_distance": 2, "questions_per_episode": 6, "haystack": "prose"}),
    ("multi_session", {"context_lengths": [2048]}),
    ("multi_session", {"context_lengths": [3000], "chunking": "session", "questions_per_category": 2, "haystack": "noise", "num_chains": 2}),
]
IDS = [f"{n}-{v.get('variant', i)}" for i, (n, v) in enumerate(CASES)]


@lru_cache(maxsize=None)
def tok():
    return byte_tokenizer()


def make(name: str, values: dict):
    cls = TASKS.get(name)
    return cls(build_config(cls.Config, dict(values), "task"))


@lru_cache(maxsize=None)
def _samples(i: int, seed: int = 0, split: str = "eval"):
    name, values = CASES[i]
    return make(name, {**values, "split": split}).samples(tok(), seed)


@pytest.mark.parametrize("name", OURS)
def test_every_task_builds_from_its_yaml_through_the_registry(name: str) -> None:
    assert name in TASKS.names()
    cls = TASKS.get(name)
    values = OmegaConf.to_container(OmegaConf.load(str(files("configs").joinpath("task", f"{name}.yaml"))))
    assert values.pop("name") == name
    cfg = build_config(cls.Config, values, "task")
    task = cls(cfg)
    assert cfg.max_new_tokens > 0 and task.name == name and isinstance(cls.metric, str)


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_samples_are_seeded_and_deterministic(i: int) -> None:
    name, values = CASES[i]
    a = _samples(i)
    b = make(name, values).samples(byte_tokenizer(), 0)  # new task, new tokenizer object
    assert a == b and len(a) > 0
    assert len({s.id for s in a}) == len(a), "sample ids must be unique"
    c = make(name, values).samples(tok(), 1)
    assert [s.chunks for s in a] != [s.chunks for s in c], "another seed must give other contexts"


def _digest(indices: list[int]) -> str:
    import dataclasses
    import hashlib
    import json

    h = hashlib.sha256()
    for i in indices:
        for s in make(*CASES[i]).samples(tok(), 0):
            h.update(json.dumps(dataclasses.asdict(s), sort_keys=True).encode())
    return h.hexdigest()


def test_samples_do_not_depend_on_the_process_hash_seed() -> None:
    import os
    import subprocess
    import sys

    picks = [0, IDS.index("kv_recall-11"), IDS.index("fact_update-13"), IDS.index("multi_session-15")]
    code = f"from tests.test_tasks_suite import _digest; print(_digest({picks}))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=str(Path(__file__).parent.parent))
    assert other.stdout.strip() == _digest(picks)


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_context_is_within_two_percent_of_the_requested_tokens(i: int) -> None:
    for s in _samples(i):
        target = s.slices["context_length"]
        got = sum(count(tok(), c) for c in s.chunks)  # chunks are tokenised separately by the harness
        assert abs(got - target) <= 0.02 * target, (s.id, got, target)
        assert s.meta["context_tokens"] == got


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_reference_scores_one_and_empty_scores_zero(i: int) -> None:
    task = make(*CASES[i])
    for s in _samples(i):
        assert task.score(s, s.answers[0]) == 1.0, s.id
        assert task.score(s, " " + s.answers[0] + "\nQuestion: something else") == 1.0, s.id
        assert task.score(s, "") == 0.0, s.id
        assert all(e and e in s.context for e in s.evidence), s.id  # verbatim, for the oracle and retrieval recall


@pytest.mark.parametrize(
    "name, values, field",
    [("ruler_niah", {"variant": "single_9"}, "task.variant"), ("ruler_niah", {"variant": "multikey_2", "haystack": "prose"}, "task.haystack"),
     ("ruler_niah", {"depths": [101]}, "task.depths"), ("ruler_niah", {"split": "test"}, "task.split"),
     ("variable_tracking", {"num_hops": -1}, "task.num_hops"), ("variable_tracking", {"context_lengths": [10]}, "task.context_lengths"),
     ("kv_recall", {"num_facts": [8, 0]}, "task.num_facts"), ("kv_recall", {"layout": "grid"}, "task.layout"),
     ("kv_recall", {"num_facts": "many"}, "task.num_facts"), ("fact_update", {"update_fraction": 1.5}, "task.update_fraction"),
     ("fact_update", {"num_entities": 1}, "task.num_entities"), ("multi_session", {"num_rules": 8}, "task.num_rules"),
     ("multi_session", {"chunking": "turn"}, "task.chunking"), ("multi_session", {"num_sessions": 1}, "task.num_sessions"),
     ("jsonl", {"metric": "bleu"}, "task.metric")],
)
def test_invalid_values_name_the_field(name: str, values: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(field)):
        make(name, values)


@pytest.mark.parametrize(
    "name, values, fields",
    [("kv_recall", {"context_length": 256, "num_facts": 64}, "task.num_facts"),
     ("fact_update", {"context_lengths": [256], "num_entities": 8}, "task.num_entities"),
     ("multi_session", {"context_lengths": [512]}, "task.context_lengths"),
     ("variable_tracking", {"context_lengths": [128], "num_chains": 4}, "task.num_chains")],
)
def test_facts_that_do_not_fit_raise_instead_of_overflowing(name: str, values: dict, fields: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fields)):
        make(name, values).samples(tok(), 0)


# ---- train/eval splits -------------------------------------------------------------------------


def _strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in _strings(v)]
    return []


TABLES = {
    "ruler_niah": ruler_niah.TEMPLATES, "variable_tracking": variable_tracking.TEMPLATES, "kv_recall": kv_recall.TEMPLATES,
    "fact_update": fact_update.TEMPLATES, "multi_session.rules": _sessions_text.RULES, "multi_session.events": _sessions_text.EVENTS,
    "multi_session.chains": _sessions_text.CHAINS, "multi_session.style": _sessions_text.STYLE,
}


@pytest.mark.parametrize("table", TABLES, ids=list(TABLES))
def test_template_tables_share_no_sentence_between_splits(table: str) -> None:
    markers = {""} | set(_sessions_text.VALUE_SHAPES)  # "name": draw an invented value
    ev, tr = set(_strings(TABLES[table]["eval"])) - markers, set(_strings(TABLES[table]["train"])) - markers
    assert ev and tr and not ev & tr


def _fragments(table) -> set[str]:
    """Literal pieces (>= 12 characters) of the templates, placeholders removed."""
    return {f.strip() for s in _strings(table) for f in re.split(r"\{[^}]*\}", s) if len(f.strip()) >= 12}


def test_entity_draws_respect_the_split() -> None:
    r = _split.rng("test", "eval", 0)
    for split in _split.SPLITS:
        taken: set[str] = set()
        drawn = [_split.invent(r, split, taken) for _ in range(200)] + [_split.word_key(r, split, taken) for _ in range(200)]
        drawn += [_split.uuid_key(r, split, taken) for _ in range(50)] + [_split.letters(r, split, 5, taken) for _ in range(200)]
        assert all(_split.side(w) == split for w in drawn) and len(set(drawn)) == len(drawn)


# user data (jsonl) has no split of ours to check
SPLIT_CASES = [i for i, c in enumerate(CASES) if c[0] != "jsonl"]


@pytest.mark.parametrize("i", SPLIT_CASES, ids=[IDS[i] for i in SPLIT_CASES])
def test_train_and_eval_samples_share_no_entity_and_no_template(i: int, monkeypatch) -> None:
    name = CASES[i][0]
    drawn: dict[str, set[str]] = {"eval": set(), "train": set()}
    real = _split.draw

    def spy(r, split, make, taken=None, tries=10_000):
        w = real(r, split, make, taken, tries)
        drawn[split].add(w)
        return w

    monkeypatch.setattr(_split, "draw", spy)
    out = {split: make(name, {**CASES[i][1], "split": split}).samples(tok(), 0) for split in _split.SPLITS}
    assert drawn["eval"] and drawn["train"] and not drawn["eval"] & drawn["train"]
    tables = [TABLES[k] for k in TABLES if k.split(".")[0] == name]
    for split, other in (("eval", "train"), ("train", "eval")):
        frags = set().union(*(_fragments(t[other]) for t in tables)) - set().union(*(_fragments(t[split]) for t in tables))
        for s in out[split]:
            visible = " ".join([s.context, s.question, s.answer_prefix, *s.answers, *s.evidence])
            assert not [f for f in frags if f in visible], f"{other} template text in a {split} sample"
            facts = " ".join([s.question, s.answer_prefix, *s.answers, *s.evidence])
            leaked = [w for w in drawn[other] if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", facts)]
            assert not leaked, f"{other} entities {leaked[:3]} in a {split} sample"
        assert _split.rng(name, split, 0).random() != _split.rng(name, other, 0).random()


# ---- task-specific semantics ------------------------------------------------------------------


def test_ruler_variants_plant_the_documented_needles() -> None:
    def run(variant: str):
        return make("ruler_niah", {"variant": variant, "context_lengths": [1024], "depths": [50]}).samples(tok(), 0)[0]

    s = run("multikey_1")
    assert s.context.count("One of the special magic numbers for") == 4 and len(s.meta["references"]) == 1
    s = run("multivalue")
    key = re.search(r"numbers for (\S+) mentioned", s.question).group(1)
    assert s.context.count(f"numbers for {key} is:") == 4 and len(s.meta["references"]) == 4
    s = run("multiquery")
    assert len(s.meta["references"]) == 4 and s.question.count(", ") == 3 and ", and " in s.question
    s = run("multikey_2")
    assert s.context.count("One of the special magic numbers for") >= 10  # the haystack is needles
    s = run("multikey_3")
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert re.fullmatch(uuid, s.meta["references"][0]) and re.search(rf"uuids for {uuid} mentioned", s.question)
    s = run("single_3")
    assert re.fullmatch(uuid, s.answers[0])
    for v, (kind, *_rest) in VARIANTS.items():
        ctx = run(v).context
        needles = sum(len(x) for x in re.findall(r"One of the special magic \w+ for \S+ is: \S+\.", ctx))
        assert (needles > 0.6 * len(ctx)) == (kind == "needles"), v
        if kind != "needles":  # a needle haystack ends with a few noise words that close the gap
            assert ("The grass is green. The sky is blue." in ctx) == (kind == "noise"), v


def test_ruler_depth_places_the_needle() -> None:
    for s in make("ruler_niah", {"variant": "single_1", "context_lengths": [2048], "depths": [0, 25, 50, 75, 100]}).samples(tok(), 0):
        assert abs(s.meta["needle_char"] / len(s.context) - s.slices["depth"] / 100) < 0.1


def test_variable_tracking_answer_is_the_resolved_chain() -> None:
    for s in _samples(IDS.index("variable_tracking-9")):
        value = re.search(r"value (\d+)", s.question).group(1)
        binds = dict(re.findall(r"VAR ([A-Z]{5}) = (?:VAR )?([A-Z]{5}|\d+)\.", s.context))
        holds = {v for v in binds if binds[v] == value}
        while True:
            more = {v for v in binds if binds[v] in holds} - holds
            if not more:
                break
            holds |= more
        assert holds == set(s.meta["references"]) and len(holds) == 5
        assert str(len(holds)) in s.answer_prefix


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_context_id_groups_exactly_the_samples_that_share_a_context(i: int) -> None:
    # accuracy intervals resample contexts, not samples: the key must match the context text
    samples = _samples(i)
    by_id: dict[str, set[str]] = {}
    by_text: dict[str, set[str]] = {}
    for s in samples:
        by_id.setdefault(s.context_id, set()).add(s.context)
        by_text.setdefault(s.context, set()).add(s.context_id)
    assert all(len(v) == 1 for v in by_id.values()) and all(len(v) == 1 for v in by_text.values())
    if CASES[i][0] in ("kv_recall", "fact_update", "multi_session"):
        assert len(by_id) < len(samples), "several questions per episode share its context"


def test_kv_recall_sweeps_num_facts_and_shares_each_episode_context() -> None:
    samples = _samples(IDS.index("kv_recall-11"))
    assert {s.slices["num_facts"] for s in samples} == {4, 16}
    for n in (4, 16):
        group = [s for s in samples if s.slices["num_facts"] == n]
        assert len(group) == 4 and len({s.context for s in group}) == 1 and len({s.meta["episode"] for s in group}) == 1
        assert len(re.findall(r"\b[a-z]+: \d{6}\.", group[0].context)) == n
        for s in group:
            key = s.answer_prefix[:-1]
            assert re.search(rf"\b{key}: {s.answers[0]}\.", s.context)
    assert make("kv_recall", {"num_facts": 8}).cfg.num_facts == [8]


def test_fact_update_answers_follow_the_newest_fact() -> None:
    for i in (IDS.index("fact_update-13"), IDS.index("fact_update-14")):
        samples = _samples(i)
        assert {s.category for s in samples} == {"single_hop", "multi_hop"}
        for s in samples:
            nums = [int(k) for k in re.findall(r"\[(\d+)\] ", s.context)]
            assert nums == list(range(1, len(nums) + 1)) and len(nums) == s.meta["facts"]
            if s.category == "single_hop":
                lines = re.findall(rf"\[(\d+)\] {re.escape(s.answer_prefix)} ([A-Z][a-z]+)\.", s.context)
                newest = max(lines, key=lambda x: int(x[0]))[1]
                assert newest == s.answers[0] and (len(lines) > 1) == s.slices["updated"]
                if s.slices["updated"]:
                    assert s.meta["stale"] == min(lines, key=lambda x: int(x[0]))[1]
            else:
                assert len(s.evidence) == 2 and all(e in s.context for e in s.evidence)
    s = _samples(IDS.index("fact_update-14"))[0]
    assert s.meta["updates"] == s.meta["facts"] // 2  # update_fraction 1.0: every base fact updated


def test_multi_session_structure() -> None:
    per_message = _samples(IDS.index("multi_session-15"))
    assert sorted({s.category for s in per_message}) == ["multi_hop", "single_hop", "temporal", "unanswerable"]
    s = per_message[0]
    assert len(s.chunks) > 2 * 4 and sum(c.count("[Session ") for c in s.chunks) == 4
    assert all(c.startswith(("User: ", "Assistant: ", "\n[Session ", "Below are")) for c in s.chunks)
    dates = re.findall(r"\[Session \d, ([^\]]+)\]", s.context)
    for q in per_message:
        if q.category == "temporal":
            assert q.answers[0] in dates
        if q.category == "unanswerable":
            assert q.answers == ["not mentioned"]
        if q.category == "single_hop" and q.meta["updated"]:
            assert s.context.index(q.meta["stale"]) < s.context.index(q.evidence[0])
    per_session = _samples(IDS.index("multi_session-16"))
    assert len(per_session[0].chunks) == 4 and all(c.lstrip("\n").startswith(("--", "[", "Below", "What")) for c in per_session[0].chunks)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ruler_niah", "variable_tracking", "kv_recall", "fact_update", "multi_session"])
def test_default_configs_are_sized_in_gemma_tokens(name: str) -> None:
    from tests.conftest import default_lm

    gemma = default_lm().tokenizer
    variants = list(VARIANTS) if name == "ruler_niah" else [None]
    for v in variants:
        task = make(name, {"variant": v} if v else {})
        for s in task.samples(gemma, 0):
            target = s.slices["context_length"] if "context_length" in s.slices else task.cfg.context_length
            got = sum(count(gemma, c) for c in s.chunks)
            assert abs(got - target) <= 0.02 * target, (s.id, got, target)
