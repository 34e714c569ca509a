"""The windowed cache is exact: chunked ingest with eviction equals one full forward under the
equivalent attention mask (sinks + the last ``window`` tokens before each chunk + causal in-chunk)."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_lm
from harness.registry import build_config
from methods.window import Window, WindowConfig


@pytest.mark.parametrize("family", ["gemma3", "qwen3", "llama"])
@pytest.mark.parametrize("chunk", [1, 8])
def test_window_matches_masked_full_forward(family: str, chunk: int) -> None:
    lm = tiny_lm(family)
    W, S, T = 12, 4, 60
    ids = [(i * 7) % 200 + 3 for i in range(T)]
    m = Window(build_config(WindowConfig, {"window": W, "sinks": S, "chunk_size": chunk}, "method"), lm)
    m.reset()
    m.cache = m.make_cache()
    with torch.inference_mode():
        outs = []
        for s in range(0, T, chunk):
            outs.append(lm.model(input_ids=torch.tensor([ids[s : s + chunk]]), cache=m.cache, use_cache=True).logits[0])
            m._track(m.cache)  # evicts
        ours = torch.cat(outs)  # [T, V]
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        visible = (j <= i) & ((j < S) | (j >= (i // chunk) * chunk - W))  # [T, T]
        ref = lm.model(input_ids=torch.tensor([ids]), attention_mask=visible[None, None]).logits[0]
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)
    assert m.cache.layers[0].keys.shape[-2] <= S + W
