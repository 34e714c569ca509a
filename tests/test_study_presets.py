"""The study presets compose to the intended runs and every run validates (nothing is run)."""

from __future__ import annotations

import pytest

from harness.launch import validate
from harness.registry import ConfigError
from test_sweep_presets import _runs

ALL = {"full_kv", "full_kv_int8", "window", "streaming_llm", "rag_bm25", "rag_dense", "snapkv_50", "snapkv_90", "expected_attention_50",
       "expected_attention_90", "deltamem_state", "deltamem_state_r32", "deltamem_paper", "oracle", "no_memory"}


def test_capacity_is_kv_recall_one_to_64_facts_across_every_variant() -> None:
    runs = _runs("study_capacity")
    assert {r.study.variant for r in runs} == ALL and len(runs) == len(ALL)
    assert {tuple(r.task.num_facts) for r in runs} == {(1, 2, 4, 8, 16, 32, 64)}
    assert {r.task.name for r in runs} == {"kv_recall"} and {r.study.part for r in runs} == {"capacity"}
    assert {r.task.num_queries for r in runs} == {1}  # a question per context: each query re-reads its context anyway
    by = {r.study.variant: r for r in runs}
    assert by["full_kv_int8"].method.kv_quantization == "int8" and by["deltamem_state_r32"].method.rank == 32
    assert by["streaming_llm"].method.sinks > 0 and by["window"].method.window == by["deltamem_state"].method.window  # same bytes
    assert by["deltamem_paper"].method.window is None and by["rag_dense"].method.retriever == "dense"
    assert {by[v].method.compression_ratio for v in ("snapkv_50", "snapkv_90")} == {0.5, 0.9}
    for r in runs:
        validate(r)


def test_capacity_headline_adds_fresh_contexts_at_one_n_for_the_same_bytes_comparison() -> None:
    grid = {r.study.variant: r for r in _runs("study_capacity")}
    runs = _runs("study_capacity_headline")
    assert {r.study.variant for r in runs} == {"full_kv", "window", "deltamem_state_r32", "rag_bm25"}
    for r in runs:
        assert r.task.num_facts == [8] and r.study.part == "capacity"
        assert r.task.samples_per_cell + grid[r.study.variant].task.samples_per_cell >= 100  # the pooled headline cell
        assert r.seed != grid[r.study.variant].seed  # other contexts than the grid's, so pooling them repeats none
        assert r.task.context_length == grid[r.study.variant].task.context_length
        validate(r)


def test_cost_is_one_run_per_variant_and_length() -> None:
    cpu = _runs("study_cost", "model.device=cpu")
    assert sorted({r.task.context_lengths[0] for r in cpu}) == [512, 1024, 2048, 4096, 8192]
    assert len(cpu) == 5 * len({r.study.variant for r in cpu}) and {"full_kv", "deltamem_state"} <= {r.study.variant for r in cpu}
    assert all(r.run.ignore_eos and r.run.repetitions >= 3 for r in cpu)
    gpu = _runs("study_cost_gpu", "model.device=cuda")
    assert max(r.task.context_lengths[0] for r in gpu) == 32768
    for r in cpu:
        validate(r)


def test_agent_crosses_two_tasks_with_the_variants() -> None:
    runs = _runs("study_agent")
    assert {r.task.name for r in runs} == {"multi_session", "fact_update"} and len(runs) == 2 * len({r.study.variant for r in runs})
    for r in runs:
        validate(r)


def test_precision_is_the_memory_cards_precision_matrix_as_part_5() -> None:
    runs = _runs("study_precision")
    plain = _runs("precision")
    assert len(runs) == len(plain) and {r.study.part for r in runs} == {"precision"}
    settings = {(str(r.model.dtype), str(r.model.quantization)) for r in runs}
    assert settings == {("float32", "none"), ("bfloat16", "none"), ("bfloat16", "int8"), ("bfloat16", "int4")}
    assert {r.method.name for r in runs} == {"full_kv", "window", "rag", "deltamem"}


def test_smoke_is_every_part_on_the_tiny_model_without_extras() -> None:
    runs = _runs("study_smoke")
    assert {r.model.name for r in runs} == {"tiny_random"}
    assert {r.study.part for r in runs} == {"capacity", "cost", "agent", "precision"}
    assert {r.method.name for r in runs} <= {"full_kv", "window", "deltamem", "no_memory", "oracle", "rag"}
    assert all(r.run.limit and r.run.timeout_s for r in runs)
    for r in runs:
        validate(r)


def test_unknown_variant_is_rejected_with_the_choices() -> None:
    with pytest.raises(Exception, match="snapkv_50"):
        _runs("study_capacity", "+variant=snapkv_5")
