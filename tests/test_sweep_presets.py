"""Experiment presets compose, expand to the intended runs, and every run passes validation
(in-process: nothing is run, no model is loaded)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

import harness.sweep  # noqa: F401  (registers the cfg_hash / sweep_id / cpu_cap resolvers)
from harness.launch import validate
from harness.sweep import expand_jobs
from methods import REGISTRY as METHODS
from tasks import REGISTRY as TASKS


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="configs", version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def _runs(preset: str, *extra: str) -> list:
    cfg = _compose([f"experiment={preset}", *extra])
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN", f"{preset} should start a sweep without -m"
    jobs = expand_jobs(cfg)
    return [_compose(list(job)) for job in jobs]


def _require(methods=(), tasks=()) -> None:
    missing = [m for m in methods if m not in METHODS.names()] + [t for t in tasks if t not in TASKS.names()]
    assert not missing, f"presets name plugins that do not exist: {missing}"


def test_needle_grid_is_methods_by_lengths_with_depths_inside() -> None:
    _require(["full_kv", "window", "deltamem", "no_memory"])
    runs = _runs("needle_grid")
    cells = {(r.method.name, tuple(r.task.context_lengths)) for r in runs}
    assert len(runs) == len(cells) == 16
    assert {m for m, _ in cells} == {"full_kv", "window", "deltamem", "no_memory"}
    assert {n for _, (n,) in cells} == {512, 1024, 2048, 4096}
    assert all(len(r.task.depths) >= 5 and r.task.name == "needle" for r in runs)
    for r in runs:
        validate(r)


def test_capacity_sweeps_state_size_and_baselines_share_its_task() -> None:
    _require(["deltamem", "full_kv", "window", "no_memory"], ["kv_recall"])
    runs = _runs("capacity")
    assert sorted(r.method.rank for r in runs) == [8, 16, 32, 64] and {r.method.name for r in runs} == {"deltamem"}
    base = _runs("capacity_baselines")
    assert sorted(r.method.name for r in base) == ["full_kv", "no_memory", "window"]
    assert {OmegaConf.to_yaml(r.task) for r in runs + base} == {OmegaConf.to_yaml(runs[0].task)}  # one task block
    assert len(runs[0].task.num_facts) >= 5
    for r in runs + base:
        validate(r)


def test_paper_efficiency_caps_lengths_on_cpu_and_says_so(capfd) -> None:
    _require(["full_kv", "window", "deltamem"], ["passkey"])
    gpu = _runs("paper_efficiency", "model.device=cuda")  # as it would resolve on a GPU machine
    assert sorted({tuple(r.task.context_lengths) for r in gpu}) == [(4096,), (16384,), (32768,)]
    assert {r.task.max_new_tokens for r in gpu} == {256} and len(gpu) == 9
    cpu = _runs("paper_efficiency", "model.device=cpu")
    lengths = sorted({r.task.context_lengths[0] for r in cpu})
    assert lengths == [256, 1024, 2048]
    err = capfd.readouterr().err
    assert "note: no CUDA device: prompt length 32768 capped to 2048 tokens" in err
    for r in cpu:
        validate(r)


def test_smoke_is_one_quick_run() -> None:
    cfg = _compose(["experiment=smoke"])
    assert str(cfg.hydra.mode) != "RunMode.MULTIRUN"
    assert cfg.model.name == "tiny_random" and cfg.run.limit and cfg.run.timeout_s
    validate(cfg)


def test_precision_is_methods_by_tasks_by_four_precisions() -> None:
    runs = _runs("precision")
    got = {(r.method.name, r.task.name, r.model.dtype, r.model.quantization) for r in runs}
    assert len(runs) == len(got) == 4 * 2 * 4
    assert {(d, q) for _, _, d, q in got} == {("float32", "none"), ("bfloat16", "none"), ("bfloat16", "int8"), ("bfloat16", "int4")}
    for r in runs:
        assert r.run.persist is True
        validate(r)
