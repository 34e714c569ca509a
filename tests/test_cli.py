"""The command line: deterministic run folders, dry runs, exit codes, the sweep table's rendering."""

from __future__ import annotations

import pytest
from _harness_cli import run_cli
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from harness import sweep
from harness.resume import config_hash


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="configs", version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def test_run_folder_is_named_by_the_config_hash() -> None:
    cfg = _compose(["experiment=smoke", "method=window", "method.window=64", "out_dir=/r"])
    run_dir = str(cfg.hydra.run.dir)
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])  # what the task function receives
    assert run_dir == f"/r/window_needle_tiny_random_{config_hash(job)}"
    moved = _compose(["experiment=smoke", "method=window", "method.window=64", "out_dir=/elsewhere", "launcher=inline"])
    assert str(moved.hydra.run.dir).endswith(run_dir.rsplit("/", 1)[1])  # where and how: same hash
    other = _compose(["experiment=smoke", "method=window", "method.window=65", "out_dir=/r"])
    assert str(other.hydra.run.dir) != run_dir


def test_sweep_folder_is_named_by_the_command_line() -> None:
    a = sweep._sweep_id(["experiment=needle_grid", "model=tiny_random"], "needle_grid")
    assert a.startswith("needle_grid_")
    assert sweep._sweep_id(["model=tiny_random", "experiment=needle_grid", "force=true", "run.timeout_s=9"]) == a
    assert sweep._sweep_id(["experiment=needle_grid", "model=gemma3_270m"]) != a
    assert sweep._sweep_id(["method=full_kv,window"]).startswith("sweep_")


def test_exit_code_is_the_worst_status(monkeypatch) -> None:
    monkeypatch.setattr(sweep, "_exit_codes", [])
    for status in ("ok", "skipped"):
        sweep.record_exit(status)
    assert sweep.exit_code() == 0
    sweep.record_exit("timeout")
    assert sweep.exit_code() == 1
    sweep.record_exit("config_error")
    sweep.record_exit("oom")
    assert sweep.exit_code() == 2


def test_sweep_table_escapes_cells() -> None:
    rows = [{"num": 0, "status": "failed", "method": "m", "error": "ValueError: a | b\nsecond line", "accuracy": 0.123456}]
    md = sweep.render_md(rows)
    assert md.startswith("# sweep: 1 runs (1 failed)")
    assert "a \\| b second line" in md and "| 0.1235 |" in md
    assert sweep.render_csv(rows).splitlines()[0].split(",")[:3] == ["num", "status", "method"]


def test_dry_run_lists_a_sweep_and_runs_nothing(tmp_path) -> None:
    r = run_cli(["-m", "experiment=smoke", "method=full_kv,no_memory", "dry_run=true", f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "#0 " in r.stdout and "#1 " in r.stdout and r.stdout.count(" to run: ") == 2
    assert "dry run: 2 runs valid; nothing was run" in r.stdout
    assert not any(tmp_path.iterdir())


def test_sweep_values_are_prechecked_too(tmp_path) -> None:
    r = run_cli(["-m", "method=full_kv,windw", f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 2 and "unknown method 'windw', did you mean 'window'?" in r.stderr


@pytest.mark.parametrize("args", [[], ["a", "b"]])
def test_child_needs_exactly_one_run_folder(tmp_path, args) -> None:
    r = run_cli(args, tmp_path, module="harness.child")
    assert r.returncode == 64 and "usage: python -m harness.child <run_dir>" in r.stderr


def test_progress_eta_counts_only_runs_that_ran(tmp_path, monkeypatch) -> None:
    from harness import io

    monkeypatch.setenv(sweep.ENV_INVOCATION, "inv1")
    monkeypatch.setenv(sweep.ENV_TOTAL, "5")
    monkeypatch.setenv(sweep.ENV_T0, "0")
    for i, (status, wall) in enumerate([("skipped", 0.01), ("ok", 10.0), ("failed", 20.0)]):
        io.write_json(tmp_path / f"r{i}" / "job.json", {"invocation": "inv1", "num": i, "status": status, "wall_s": wall})
    io.write_json(tmp_path / "old" / "job.json", {"invocation": "other", "status": "ok", "wall_s": 1.0})
    line = sweep.progress_line(tmp_path, "r2", "failed", 20.0)
    assert line.startswith("[3/5] failed r2 (20.0 s)") and line.endswith("eta 0:00:30")  # 2 left × mean(10, 20)
    monkeypatch.delenv(sweep.ENV_INVOCATION)
    assert sweep.progress_line(tmp_path, "r2", "ok", 1.0) is None  # not in a sweep
