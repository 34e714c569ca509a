"""Contract tests: every registered method and task, on tiny random models of every family."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_lm
from harness.prompt import encode
from harness.registry import ConfigError, build_config
from methods import REGISTRY as METHODS
from methods.base import Method
from tasks import REGISTRY as TASKS
from tasks.base import Sample

# Test-only plugins opt out with ``contract = False`` (e.g. a method built to crash).
METHOD_NAMES = [n for n in METHODS.names() if getattr(METHODS.get(n), "contract", True)]


def _sample(n_chars: int = 300) -> Sample:
    body = ("The grass is green. " * 40)[:n_chars]
    chunks = [body[: n_chars // 2], "The pass key is 12345. ", body[n_chars // 2 :]]
    return Sample(id="s", chunks=chunks, question="What is the pass key?", answers=["12345"], answer_prefix="The pass key is",
                  evidence=["The pass key is 12345."], slices={"context_length": n_chars})


def _method(name: str, lm, **over) -> Method:
    cls = METHODS.get(name)
    extra = {"window": 64} if name == "window" else {}
    extra.update(over)
    return cls(build_config(cls.Config, extra, "method"), lm)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_contract(name: str, family: str) -> None:
    lm = tiny_lm(family)
    m = _method(name, lm, chunk_size=64)
    ctx, q = encode(_sample(), lm.tokenizer, chat=False)
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


def test_full_kv_matches_bare_greedy_generate(tiny) -> None:
    """The harness's chunked prefill + decode yields exactly what transformers' generate does."""
    lm = tiny
    m = _method("full_kv", lm, chunk_size=37)
    ctx, q = encode(_sample(), lm.tokenizer, chat=False)
    m.reset()
    m.ingest(ctx)
    ours = [int(t) for t in m.answer(q, 8)]
    ids = torch.tensor([ctx.all_ids() + q.ids])
    ref = lm.model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=sorted(lm.eos_ids), pad_token_id=0)[0, ids.shape[1] :]
    assert ours == ref.tolist()[: len(ours)]


# Tasks that read a user's file (jsonl) have no seed to vary; tests/test_tasks_jsonl.py covers them.
GENERATED_TASKS = [n for n in TASKS.names() if not getattr(TASKS.get(n), "needs_path", False)]


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


def test_unknown_names_suggest() -> None:
    with pytest.raises(ConfigError, match=r"unknown method 'ful_kv', did you mean 'full_kv'\? valid: .*full_kv.*window"):
        METHODS.get("ful_kv")
    with pytest.raises(ConfigError, match=r"unknown task 'neele', did you mean 'needle'"):
        TASKS.get("neele")


@pytest.mark.parametrize(
    "values, field",
    [({"depths": [150]}, "task.depths"), ({"context_lengths": [-5]}, "task.context_lengths"), ({"haystack": "poetry"}, "task.haystack"),
     ({"samples_per_cell": 0}, "task.samples_per_cell")],
)
def test_task_invalid_values_name_the_field(values: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_config(TASKS.get("needle").Config, values, "task")


def test_window_larger_than_context_fails_fast() -> None:
    lm = tiny_lm("llama")
    m = _method("window", lm, window=4096)
    ctx, _ = encode(_sample(), lm.tokenizer, chat=False)
    with pytest.raises(ConfigError, match=r"method\.window.*not smaller than the context"):
        m.validate(ctx.num_tokens)
