"""Checks of particular built-in methods and tasks (the shared contract tests name none)."""

from __future__ import annotations

import pytest
import torch

from conftest import contract_sample, tiny_lm
from harness.prompt import encode
from harness.registry import ConfigError, build_config
from methods import REGISTRY as METHODS
from methods.full_kv import FullKV, FullKVConfig
from methods.window import Window, WindowConfig
from tasks import REGISTRY as TASKS


def test_full_kv_matches_bare_greedy_generate(tiny) -> None:
    """The harness's chunked prefill + decode yields exactly what transformers' generate does."""
    lm = tiny
    m = FullKV(FullKVConfig(chunk_size=37), lm)
    ctx, q = encode(contract_sample(), lm.tokenizer, chat=False)
    m.reset()
    m.ingest(ctx)
    ours = [int(t) for t in m.answer(q, 8)]
    ids = torch.tensor([ctx.all_ids() + q.ids])
    ref = lm.model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=sorted(lm.eos_ids), pad_token_id=0)[0, ids.shape[1] :]
    assert ours == ref.tolist()[: len(ours)]


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
    m = Window(WindowConfig(window=4096), lm)
    ctx, _ = encode(contract_sample(), lm.tokenizer, chat=False)
    with pytest.raises(ConfigError, match=r"method\.window.*not smaller than the context"):
        m.validate(ctx.num_tokens)
