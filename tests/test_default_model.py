"""End-to-end on the real default model (Gemma 3 270M from PyPI). Slow: minutes on CPU."""

from __future__ import annotations

import pytest
import torch

from conftest import default_lm
from harness.api import run

pytestmark = pytest.mark.slow


def test_greedy_completion_is_sensible() -> None:
    """Fails if a dependency change silently breaks the GGUF path (transformers 5.2 generates garbage)."""
    lm = default_lm()
    ids = lm.tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = lm.model.generate(ids, max_new_tokens=8, do_sample=False)
    text = lm.tokenizer.decode(out[0, ids.shape[1] :])
    assert text == " the capital of the country of France."


def test_passkey_full_kv_window_no_memory(tmp_path) -> None:
    common = ["model.dtype=float32", "model.device=cpu", "run.progress=false", "run.warmup=0"]
    full = run(["method=full_kv", "task=passkey", *common], tmp_path / "full")
    assert full["status"] == "ok"
    assert full["accuracy"]["n"] == 6 and full["accuracy"]["mean"] >= 5 / 6
    m = full["metrics"]
    for k in ("ingest_s", "ttft_query_s", "ttft_cold_s", "decode_tok_per_s", "e2e_s", "state_bytes", "host_peak_rss_bytes"):
        assert m[k]["n"] > 0 and m[k]["mean"] > 0, k

    # the window keeps the last 256 tokens: a key at 97% depth is inside it, one at 10% is not
    win = run(["method=window", "method.window=256", "task=passkey", "task.context_lengths=[1024]", "task.depths=[10,97]", *common], tmp_path / "win")
    by_depth = win["slices"]["depth"]
    assert by_depth["97.0"]["mean"] == 1.0 and by_depth["10.0"]["mean"] == 0.0
    assert win["metrics"]["state_bytes"]["max"] < full["metrics"]["state_bytes"]["min"]

    closed = run(["method=no_memory", "task=passkey", "task.context_lengths=[1024]", *common], tmp_path / "none")
    assert closed["accuracy"]["mean"] == 0.0
    assert closed["metrics"]["state_bytes"]["max"] < 64 * 1024
