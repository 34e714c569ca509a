"""``experiment=smoke`` runs with every product method: the preset sizes the KV window of the windowed
methods to its 128-token contexts, and each method really runs the preset's sample on tiny_random."""

from __future__ import annotations

import pytest
from _harness_cli import run_cli

from harness.api import compose
from harness.launch import validate
from methods import REGISTRY as METHODS

PRODUCT = [n for n in METHODS.names() if not METHODS.get(n).test_only]
WINDOWED = {"window", "deltamem"}  # methods whose method.window the preset sets through kv_window


def test_product_methods_are_all_there() -> None:
    assert {"full_kv", "window", "deltamem", "no_memory", "rag", "oracle", "kvpress"} <= set(PRODUCT)
    assert "fault" not in PRODUCT


@pytest.mark.parametrize("method", PRODUCT)
def test_smoke_runs_with_every_method(method: str, tmp_path) -> None:
    if missing := METHODS.get(method).missing():
        pytest.skip(f"method={method} needs an optional package that is not installed: {'; '.join(missing)}")
    from harness.run import execute

    cfg = compose(["experiment=smoke", f"method={method}", "run.progress=false"])
    validate(cfg)  # what a sweep checks before any run starts
    if method in WINDOWED:
        assert cfg.method.window == 32 < min(cfg.task.context_lengths)
    summary = execute(cfg, tmp_path)
    assert summary["status"] == "ok", summary.get("error")
    assert summary["accuracy"]["n"] == 1 and summary["method"] == method  # the preset's one 128-token needle
    assert (tmp_path / "samples.jsonl").read_text().count("\n") == 1


def test_smoke_window_from_the_command_line(tmp_path) -> None:
    # the command that used to end in a config error (window 256 > the 128-token context)
    r = run_cli(["experiment=smoke", "method=window", "launcher=inline", "run.progress=false", f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = [p for p in tmp_path.iterdir() if p.name.startswith("window_needle_tiny_random_")]
    assert "window: 32" in (run / "config.yaml").read_text()


def test_command_line_window_still_wins_over_the_preset() -> None:
    assert compose(["experiment=smoke", "method=window", "method.window=64"]).method.window == 64
    assert compose(["method=window"]).method.window == 256  # outside the preset: the method's default
