"""Sweeps survive their runs: a crash, a hang and a hard crash each end one run, never the sweep.

These run the real CLI in subprocesses on the tiny model; every run is a fresh child process, so
each costs an interpreter start (a few seconds on CPU).
"""

from __future__ import annotations

import csv
import json

import pytest
from _harness_cli import run_cli, summaries, sweep_dir

from harness.resume import check_result

# long enough for a normal tiny-model run on a busy 2-core machine, short enough to wait for once
TIMEOUT_S = 40


def test_sweep_survives_a_crash_and_a_timeout(tmp_path) -> None:
    # 2 modes x 3 lengths = 6 runs; the fault fires only at the 128-token context: one raise, one hang
    r = run_cli(["-m", "experiment=smoke", "method=fault", "method.min_tokens=120", "method.mode=raise,hang",
                 "task.context_lengths=[64],[96],[128]", f"run.timeout_s={TIMEOUT_S}", "run.progress=false",
                 f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    runs = summaries(tmp_path)
    assert len(runs) == 6
    by_status: dict[str, list[dict]] = {}
    for name, s in runs.items():
        by_status.setdefault(s["status"], []).append(s | {"dir": name})
    assert sorted((k, len(v)) for k, v in by_status.items()) == [("failed", 1), ("ok", 4), ("timeout", 1)]

    for s in by_status["ok"]:  # complete results: resumable, samples present
        assert check_result(tmp_path / s["dir"]) is None
        assert s["accuracy"]["n"] == 1

    (failed,) = by_status["failed"]
    assert failed["task_config"]["context_lengths"] == [128] and failed["method_config"]["mode"] == "raise"
    assert failed["error"]["type"] == "RuntimeError" and "fault: injected failure" in failed["error"]["message"]
    assert "Traceback" in failed["error"]["traceback"] and "fault.py" in failed["error"]["traceback"]

    (timeout,) = by_status["timeout"]
    assert timeout["task_config"]["context_lengths"] == [128] and timeout["method_config"]["mode"] == "hang"
    assert timeout["error"]["type"] == "Timeout" and f"run.timeout_s={TIMEOUT_S}" in timeout["error"]["message"]
    assert "fault.py" in timeout["error"]["traceback"]  # the child's stacks, dumped before the kill, show where it hung

    d = sweep_dir(tmp_path)
    rows = list(csv.DictReader((d / "sweep_summary.csv").open()))
    assert sorted(r_["status"] for r_ in rows) == ["failed", "ok", "ok", "ok", "ok", "timeout"]
    assert [int(r_["num"]) for r_ in rows] == list(range(6))
    assert all(r_["run_dir"] for r_ in rows) and any("injected failure" in r_["error"] for r_ in rows)
    md = (d / "sweep_summary.md").read_text()
    assert md.startswith("# sweep: 6 runs (1 failed, 4 ok, 1 timeout)") and md.count("\n| ") == 7
    assert "[6/6]" in r.stdout and "eta" in r.stdout
    # the parent measured each child alone: its own peak RSS, recorded per run
    jobs = [json.loads(p.read_text()) for p in d.glob("*/job.json")]
    assert len(jobs) == 6 and all(j["child_peak_rss_bytes"] > 50 * 2**20 for j in jobs)


def test_a_segfault_is_recorded_by_the_parent(tmp_path) -> None:
    r = run_cli(["experiment=smoke", "method=fault", "method.mode=segfault", "run.progress=false", f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    ((name, s),) = summaries(tmp_path).items()
    assert s["status"] == "failed" and s["error"]["type"] == "ChildCrashed" and "SIGSEGV" in s["error"]["message"]
    assert "Segmentation fault" in s["error"]["traceback"] and "fault.py" in s["error"]["traceback"]
    assert (tmp_path / name / "samples.jsonl").read_text() == ""
    assert "Segmentation fault" in (tmp_path / name / "child.log").read_text()


def test_submitit_local_runs_a_two_job_sweep(tmp_path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install hydra-submitit-launcher")
    # each submitit job is already its own process: run inline inside it
    r = run_cli(["-m", "experiment=smoke", "hydra/launcher=submitit_local", "method=full_kv,no_memory", "launcher=inline",
                 "run.progress=false", f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    d = sweep_dir(tmp_path)  # both jobs landed in the one sweep folder computed by the parent
    assert sorted(s["method"] for s in summaries(d).values()) == ["full_kv", "no_memory"]
    assert all(s["status"] == "ok" for s in summaries(d).values())
    rows = list(csv.DictReader((d / "sweep_summary.csv").open()))
    assert sorted((r_["method"], r_["status"]) for r_ in rows) == [("full_kv", "ok"), ("no_memory", "ok")]
    assert list(d.glob(".submitit/*/*_log.out"))


@pytest.mark.parametrize(("settings", "tag"), [
    ({}, ""),
    ({"model": {"dtype": "auto", "quantization": "none"}, "method": {"kv_quantization": "none"}}, ""),
    ({"model": {"dtype": "bfloat16", "quantization": "int8"}}, "_bf16_wint8"),
    ({"model": {"dtype": "float32"}, "method": {"kv_quantization": "int4"}}, "_kvint4"),
    ({"model": {"dtype": "float16"}}, "_fp16"),
])
def test_run_folder_names_carry_precision_settings(settings, tag) -> None:
    from omegaconf import OmegaConf

    import harness.sweep  # noqa: F401  registers the resolvers

    cfg = OmegaConf.create({**settings, "name": "full_kv_needle_m${setting_tag:}_abc"})
    assert cfg.name == f"full_kv_needle_m{tag}_abc"
