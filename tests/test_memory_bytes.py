"""State bytes are counted from tensors: full KV grows linearly with the context, a window stays bounded."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_lm
from harness.registry import build_config
from methods import REGISTRY as METHODS
from methods.base import Context


def _ctx(n: int) -> Context:
    ids = [(i * 7) % 200 + 3 for i in range(n)]
    return Context(prefix_ids=[1], chunk_ids=[ids], chunk_texts=[""])


def _state(name: str, family: str, n: int, **cfg) -> tuple[int, int]:
    lm = tiny_lm(family)
    cls = METHODS.get(name)
    m = cls(build_config(cls.Config, {"chunk_size": 64, **cfg}, "method"), lm)
    m.reset()
    m.ingest(_ctx(n))
    return m.state_bytes(), m.state_bytes_peak()


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_full_kv_state_grows_linearly(family: str) -> None:
    lengths = [128, 256, 512, 1024]
    sizes = [_state("full_kv", family, n)[0] for n in lengths]
    lm = tiny_lm(family)
    c = lm.model.config
    per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 4  # K and V, fp32
    slope, intercept = np.polyfit([n + 1 for n in lengths], sizes, 1)
    assert slope == pytest.approx(per_token, rel=1e-6)
    assert abs(intercept) < per_token


def test_full_kv_on_sliding_model_counts_only_what_is_held() -> None:
    """Gemma 3's sliding layers keep their window; the count reflects the tensors really held."""
    a, b = _state("full_kv", "gemma3", 512)[0], _state("full_kv", "gemma3", 1024)[0]
    c = tiny_lm("gemma3").model.config
    full_layers = sum(t == "full_attention" for t in c.layer_types)
    per_token_full = 2 * full_layers * c.num_key_value_heads * c.head_dim * 4
    assert b - a == 512 * per_token_full


@pytest.mark.parametrize("family", ["gemma3", "qwen3", "llama"])
def test_window_state_is_bounded(family: str) -> None:
    sizes = [_state("window", family, n, window=100, sinks=4) for n in (256, 512, 1024, 2048)]
    finals = [s for s, _ in sizes]
    assert len(set(finals)) == 1, f"window state must not grow with the context: {finals}"
    c = tiny_lm(family).model.config
    per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 4
    assert finals[0] <= 104 * per_token
    peaks = [p for _, p in sizes]
    assert len(set(peaks)) == 1 and peaks[0] <= (104 + 64) * per_token  # window + sinks + one chunk
