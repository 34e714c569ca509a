"""Resume: complete results are found by config hash and skipped; truncated or missing ones are redone."""

from __future__ import annotations

import csv

from _harness_cli import run_cli, summaries, sweep_dir
from omegaconf import OmegaConf

from harness import io
from harness.resume import check_result, config_hash

SWEEP = ["-m", "experiment=smoke", "method=full_kv,no_memory,fault", "run.progress=false"]


def test_rerun_redoes_only_the_broken_run(tmp_path) -> None:
    r = run_cli([*SWEEP, f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    d = sweep_dir(tmp_path)
    runs = sorted(p.parent for p in d.glob("*/summary.json"))
    assert len(runs) == 3
    broken, kept = runs[0], runs[1:]
    text = (broken / "summary.json").read_text()
    (broken / "summary.json").write_text(text[: len(text) // 2])  # as if killed mid-write without atomic writes
    mtimes = {p: (p / "summary.json").stat().st_mtime_ns for p in kept}

    r = run_cli([*SWEEP, f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("skipped: ") == 2 and f"redoing {broken.name}: summary.json is truncated or corrupt" in r.stdout
    assert {p: (p / "summary.json").stat().st_mtime_ns for p in kept} == mtimes  # untouched
    assert check_result(broken) is None  # redone, complete again
    rows = list(csv.DictReader((d / "sweep_summary.csv").open()))
    assert sorted((r_["run_dir"].rsplit("/", 1)[-1], r_["status"]) for r_ in rows) == sorted(
        [(broken.name, "ok")] + [(p.name, "skipped") for p in kept])
    assert all(r_["accuracy"] != "" for r_ in rows)  # skipped rows still show the stored result

    # the same config run on its own finds the sweep's result (anywhere under out_dir) and skips it
    r = run_cli(["experiment=smoke", "method=full_kv", f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skipped: full_kv_needle_tiny_random_" in r.stdout and str(d) in r.stdout
    assert len(summaries(tmp_path)) == 3  # nothing new written
    # ... and force=true runs it again (inline: in the CLI process, cheaper for the test)
    r = run_cli(["experiment=smoke", "method=full_kv", "force=true", "launcher=inline", "run.progress=false", f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skipped" not in r.stdout and len(summaries(tmp_path)) == 4


def _cfg(**over) -> dict:
    base = {"seed": 0, "out_dir": "runs", "launcher": "process", "force": False, "dry_run": False,
            "model": {"name": "tiny_random"}, "method": {"name": "full_kv", "chunk_size": 512},
            "task": {"name": "needle", "depths": [50]}, "run": {"limit": 2, "progress": True, "timeout_s": None}}
    for k, v in over.items():
        node = base
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return base


def test_hash_ignores_where_and_how_but_not_what() -> None:
    h = config_hash(OmegaConf.create(_cfg()))
    for volatile in ({"out_dir": "elsewhere"}, {"launcher": "inline"}, {"force": True}, {"dry_run": True},
                     {"run.progress": False}, {"run.timeout_s": 5}):
        assert config_hash(OmegaConf.create(_cfg(**volatile))) == h, volatile
    for real in ({"seed": 1}, {"method.chunk_size": 64}, {"task.depths": [25]}, {"run.limit": 3}, {"model.name": "x"}):
        assert config_hash(OmegaConf.create(_cfg(**real))) != h, real
    reordered = OmegaConf.create(dict(reversed(list(_cfg().items()))))
    assert config_hash(reordered) == h and len(h) == 10


def _result(tmp_path, rows: int = 2, status: str = "ok"):
    cfg = OmegaConf.create(_cfg())
    io.write_text(tmp_path / "config.yaml", OmegaConf.to_yaml(cfg))
    io.write_jsonl(tmp_path / "samples.jsonl", [{"id": str(i), "rep": 0, "score": 1.0} for i in range(rows)])
    io.write_json(tmp_path / "summary.json", {"status": status, "accuracy": {"mean": 1.0, "n": rows}})
    return config_hash(cfg)


def test_complete_result_is_recognised(tmp_path) -> None:
    h = _result(tmp_path)
    assert check_result(tmp_path, h) is None


def test_incomplete_results_are_redone(tmp_path) -> None:
    h = _result(tmp_path)
    cases = {
        "summary.json is truncated": lambda: (tmp_path / "summary.json").write_text('{"status": "ok", "accur'),
        "summary.json is truncated or corrupt": lambda: (tmp_path / "summary.json").write_text("[]"),
        "status 'failed'": lambda: io.write_json(tmp_path / "summary.json", {"status": "failed", "accuracy": {"n": 2}}),
        "samples.jsonl is missing": lambda: (tmp_path / "samples.jsonl").unlink(),
        "samples.jsonl is truncated": lambda: (tmp_path / "samples.jsonl").write_text('{"id": "0", "rep": 0}\n{"id": "1", "re'),
        "has 1 samples but summary.json counts 2": lambda: io.write_jsonl(tmp_path / "samples.jsonl", [{"rep": 0}]),
        "config.yaml hashes to": lambda: io.write_text(tmp_path / "config.yaml", "seed: 7\n"),
        "config.yaml is missing": lambda: (tmp_path / "config.yaml").unlink(),
        "no summary.json": lambda: (tmp_path / "summary.json").unlink(),
    }
    for expected, breaks in cases.items():
        _result(tmp_path)
        breaks()
        reason = check_result(tmp_path, h)
        assert reason is not None and expected in reason, (expected, reason)
