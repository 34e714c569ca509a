"""benchmarks/precision_summary.py: the precision tables and the sentences under them come from the
runs — checked on fake runs whose weights, peaks and accuracies are known."""

from __future__ import annotations

import json
from pathlib import Path

from _bench import script



def _script():
    return script("precision_summary")


def _run(folder: Path, method: str, dtype: str, quant: str, weights: int, acc: float, ci: list[float], required: int, phase: str, tok_s: float) -> None:
    folder.mkdir(parents=True)
    card = {"weights_bytes": weights, "method_param_bytes": 0, "state_bytes": 0, "working_bytes": 1, "required_bytes": required,
            "required_phase": phase, "phases": {"load": {"state_bytes": 0}, "ingest": {"state_bytes": 3 * 2**20}},
            "persist": {"persisted_bytes": 1234, "restore_s": 0.01, "ingest_s": 2.0}}
    (folder / "summary.json").write_text(json.dumps({
        "status": "ok", "method": method, "task": "passkey", "method_config": {"name": method},
        "load": {"dtype": dtype, "quantization": quant}, "accuracy": {"mean": acc, "n": 10, "ci95": ci, "ci_method": "wilson"},
        "memory": card, "metrics": {"decode_tok_per_s": {"mean": tok_s}, "ttft_query_s": {"p50": 0.5}}}))
    (folder / "env.json").write_text(json.dumps({"cpu": "Test CPU", "date": "2026-11-30T00:00:00", "git_sha": "0123456789ab"}))


def test_findings_are_computed_from_the_runs(tmp_path):
    _run(tmp_path / "a", "full_kv", "float32", "none", 4 * 2**20, 1.0, [0.72, 1.0], 100 * 2**20, "ingest", 10.0)
    _run(tmp_path / "b", "full_kv", "bfloat16", "none", 2 * 2**20, 0.9, [0.6, 0.98], 150 * 2**20, "load", 8.0)
    _run(tmp_path / "c", "full_kv", "bfloat16", "int8", 2**20, 0.1, [0.02, 0.4], 120 * 2**20, "load", 5.0)
    text = "\n".join(_script().render([str(tmp_path)]))
    assert "bfloat16 none 2.0 MiB (0.50×); bfloat16 int8 1.0 MiB (0.25×)" in text
    assert "range from 100.0 MiB (full_kv, float32 none) to 150.0 MiB (full_kv, bfloat16 none)" in text
    assert "of 2 method × task × precision cells compared with float32 none, 1 differ" in text
    assert "full_kv on passkey at bfloat16 int8 (1.00 → 0.10)" in text
    assert "bfloat16 none 0.80×; bfloat16 int8 0.50×" in text
    assert "| full_kv | float32 none | 1.000 [0.720, 1.000] (n=10, wilson) | 100.0 (ingest) | 4.0 | 0.0 | 0.0 | 0.0 | 3.0 | 1,234 |" in text
