"""benchmarks/results_table.py: a results table rendered from run folders, never typed by hand.

Checked on two fake runs that differ in one method setting: that setting becomes a column, a slice
is broken down in numeric order, intervals print with their n and method, and a missing interval
says so instead of printing a bound."""

from __future__ import annotations

import json
from pathlib import Path

from _bench import script



def _script():
    return script("results_table")


def _run(folder: Path, window: int, acc: float) -> None:
    folder.mkdir(parents=True)
    entry = lambda m, n, ci: {"mean": m, "n": n, "ci95": ci, "ci_method": "wilson" if ci else "none"}  # noqa: E731
    summary = {
        "status": "ok", "method": "window", "task": "kv_recall",
        "method_config": {"name": "window", "window": window, "sinks": 4},
        "load": {"dtype": "float32", "quantization": "none"},
        "accuracy": entry(acc, 12, [acc - 0.2, acc + 0.1]),
        "slices": {"num_facts": {"8": entry(0.25, 4, [0.05, 0.7]), "2": entry(1.0, 1, None), "16": entry(0.5, 8, [0.2, 0.8])}},
        "memory": {"required_bytes": 3 * 2**20, "required_phase": "ingest", "weights_bytes": 2**20, "state_bytes": 2**19},
        "metrics": {"ttft_query_s": {"p50": 0.125}, "decode_tok_per_s": {"mean": 9.5}},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "env.json").write_text(json.dumps({"cpu": "Test CPU", "gpus": [], "date": "2026-11-30T10:00:00+00:00", "git_sha": "abcdef1234567"}))


def test_table_columns_slices_and_intervals(tmp_path, capsys):
    _run(tmp_path / "a", 256, 0.5)
    _run(tmp_path / "b", 512, 0.75)
    _script().main([str(tmp_path), "--slice", "num_facts", "--card"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2 runs; device: Test CPU (no GPU); dates 2026-11-30 to 2026-11-30; commit abcdef1234")
    head = out[2]
    assert head.startswith("| method | window | weights as | task | num_facts |"), head  # sinks is equal in both: no column
    body = [line for line in out[4:] if line.startswith("| window")]
    assert len(body) == 6
    assert [line.split(" | ")[4] for line in body[:3]] == ["2", "8", "16"]  # numeric, not string, order
    assert "| 1.000 (n=1, no CI) |" in body[0]
    assert "0.250 [0.050, 0.700] (n=4, wilson)" in body[1]
    assert "| 3.0 (ingest) | 1.0 | 0.5 | 0.125 | 9.5 |" in body[1]
    assert body[0].split(" | ")[1] == "256" and body[3].split(" | ")[1] == "512"


def test_digit_diagnostics(tmp_path, capsys):
    table = _script()
    assert table.leading_digits(" 4 4 4 3", "47743") == (1.0, 0.2)
    assert table.leading_digits(" 47713.", "47743") == (1.0, 0.6)
    assert table.leading_digits(" the key", "47743") == (0.0, 0.0)
    _run(tmp_path / "a", 256, 0.5)
    rows = [{"id": f"s{i}", "rep": 0, "slices": {"num_facts": 8}, "context_id": f"c{i // 2}", "prediction": p, "answers": ["4821"]}
            for i, p in enumerate([" 4821", " 4 4", " 5821", " 48"])]
    rows.append({**rows[0], "rep": 1, "prediction": " 9"})  # a repetition is not counted twice
    (tmp_path / "a" / "samples.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    table.main([str(tmp_path), "--slice", "num_facts", "--digits"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| window") and "| 8 |" in x)
    cells = line.strip("| ").split(" | ")
    assert cells[-2].startswith("0.750 [") and "n=4, wilson_clustered" in cells[-2]
    assert cells[-1] == f"{(1 + 0.25 + 0 + 0.5) / 4:.3f}"


def test_task_settings_that_differ_become_columns(tmp_path, capsys):
    for name, length in (("a", 512), ("b", 1024)):
        _run(tmp_path / name, 256, 0.5)
        s = json.loads((tmp_path / name / "summary.json").read_text())
        s["task_config"] = {"context_length": length, "num_queries": 2}
        (tmp_path / name / "summary.json").write_text(json.dumps(s))
    _script().main([str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "| method | weights as | task | context_length | accuracy [95 % CI] (n, method) |"
    assert [line.split(" | ")[3] for line in out[4:6]] == ["512", "1024"]
