"""Contract tests: every registered method and task (built-ins and plugins from MEMHARNESS_PLUGINS),
on tiny random models of every family. No plugin is named here: what a plugin needs for these short
contexts it declares itself (``Method.contract_overrides``, ``Method.contract``, ``Task.needs_path``),
so a new method or task runs through these tests with no edit to this file."""

from __future__ import annotations

import pytest

from conftest import contract_sample, tiny_lm
from harness.prompt import encode
from harness.registry import ConfigError, build_config
from methods import REGISTRY as METHODS
from methods.base import Method
from tasks import REGISTRY as TASKS

METHOD_NAMES = [n for n in METHODS.names() if METHODS.get(n).contract]


def contract_method(name: str, lm, **over) -> Method:
    """Method ``name`` with its declared contract overrides, then ``over``; a skip naming the optional
    package when the method needs one that is not installed."""
    cls = METHODS.get(name)
    if missing := cls.missing():
        pytest.skip(f"method={name} needs an optional package that is not installed: {'; '.join(missing)}")
    return cls(build_config(cls.Config, {**cls.contract_overrides, **over}, "method"), lm)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_contract(name: str, family: str) -> None:
    lm = tiny_lm(family)
    m = contract_method(name, lm, chunk_size=64)
    ctx, q = encode(contract_sample(), lm.tokenizer, chat=False)
    m.validate(ctx.num_tokens)
    outs = []
    for _ in range(2):  # reset makes answers reproducible
        m.reset()
        m.ingest(ctx)
        state = m.state_bytes()
        assert isinstance(state, int) and state >= 0
        gen = m.answer(q, 5)
        assert iter(gen) is gen, "answer() must be a generator that yields tokens one by one"
        toks = [int(t) for t in gen]
        assert 1 <= len(toks) <= 5 and all(0 <= t < len(lm.tokenizer) for t in toks)
        assert m.attended_tokens() > 0
        outs.append(toks)
    assert outs[0] == outs[1]


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_config_rejects_unknown_field(name: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown field 'method.chunk_sise'.*did you mean 'method.chunk_size'"):
        build_config(METHODS.get(name).Config, {"chunk_sise": 3}, "method")


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_name_is_its_registry_key(name: str) -> None:
    cls = METHODS.get(name)
    assert cls.name == name and isinstance(cls.contract_overrides, dict)


# Tasks that read a user's file (needs_path) have no seed to vary; their own test files cover them.
GENERATED_TASKS = [n for n in TASKS.names() if not TASKS.get(n).needs_path]


@pytest.mark.parametrize("name", GENERATED_TASKS)
def test_task_samples_are_seeded(name: str) -> None:
    tok = tiny_lm("gemma3").tokenizer
    cls = TASKS.get(name)
    task = cls(cls.Config())
    a, b, c = task.samples(tok, 0), task.samples(tok, 0), task.samples(tok, 1)
    assert a == b and len(a) > 0
    assert [s.chunks for s in a] != [s.chunks for s in c], "a different seed must give different samples"
    for s in a[:3]:
        assert task.score(s, s.answers[0]) == 1.0
        assert task.score(s, "") == 0.0
