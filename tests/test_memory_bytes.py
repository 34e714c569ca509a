"""State bytes are counted from tensors: full KV grows linearly with the context, a window stays bounded."""

from __future__ import annotations

import numpy as np
import torch
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


# -- sliding-window layers hold only their window, and full KV bytes follow the model config --------

def _full_kv(family: str, n: int, chunk: int):
    lm = tiny_lm(family)
    cls = METHODS.get("full_kv")
    m = cls(build_config(cls.Config, {"chunk_size": chunk}, "method"), lm)
    m.reset()
    m.ingest(_ctx(n))
    return m


def _sliding(m) -> list:
    return [la for la in m.cache.layers if getattr(la, "is_sliding", False)]


@pytest.mark.parametrize("chunk", [7, 24, 512])
def test_sliding_layers_hold_only_their_window_after_ingest(chunk: int) -> None:
    window = tiny_lm("gemma3").model.config.sliding_window  # 32
    for n in (20, 100, 300):
        m = _full_kv("gemma3", n, chunk)
        for la in _sliding(m):
            for t in (la.keys, la.values):  # [1, H, kept, D]
                assert t.shape[-2] == min(n + 1, window - 1)
                assert t.untyped_storage().nbytes() == t.numel() * t.element_size(), "a view keeps a bigger allocation"


def test_transformers_sliding_layer_keeps_a_view_that_compaction_frees(monkeypatch) -> None:
    """Without the copy, the sliding layers' window is a view of the whole last chunk (the problem the
    copy solves); with it, the cache holds the same values and the answer is the same, token by token."""
    import methods._lm as lm_mod
    from methods.base import Question

    q = Question(ids=[(i * 5) % 200 + 3 for i in range(12)], text="")

    def run():
        m = _full_kv("gemma3", 300, 128)  # window 32 < 301 tokens; last chunk 45 tokens
        held = [(la.keys.clone(), la.values.clone(), la.keys.untyped_storage().nbytes()) for la in _sliding(m)]
        return m.state_bytes(), held, [int(t) for t in m.answer(q, 16)]

    fixed = run()
    monkeypatch.setattr(lm_mod, "compact_sliding", lambda cache, slack=0: 0)
    views = run()
    row = 2 * 16 * 4  # one position of K (or V): 2 KV heads × head_dim 16 × fp32
    assert [s for *_, s in views[1]] == [(31 + 45) * row] * 2 and [s for *_, s in fixed[1]] == [31 * row] * 2
    assert views[0] - fixed[0] == 2 * 2 * 45 * row  # 2 sliding layers × K and V × the 45 surplus positions
    for (k1, v1, _), (k2, v2, _) in zip(fixed[1], views[1]):
        assert torch.equal(k1, k2) and torch.equal(v1, v2)
    assert fixed[2] == views[2] and len(fixed[2]) == 16


@pytest.mark.parametrize("family", ["gemma3", "qwen3", "llama"])
def test_full_kv_bytes_equal_the_prediction_from_the_config(family: str) -> None:
    from harness.study.scaling import model_layout

    layout, why = model_layout({"source": "tiny_random", "family": family})
    assert why is None
    for n in (9, 30, 31, 32, 64, 200, 700):  # T = n + 1: below, at and above the 32-token window
        for chunk in (16, 512):
            assert _full_kv(family, n, chunk).state_bytes() == layout.bytes(n + 1, 4), (family, n, chunk)


def test_window_keeps_native_sliding_layers_to_their_window() -> None:
    """window=64 > the tiny Gemma's 32-token sliding window: its sliding layers stay transformers' own
    and hold 31 positions after ingest, the others 64; the state is exactly that."""
    lm = tiny_lm("gemma3")
    cls = METHODS.get("window")
    m = cls(build_config(cls.Config, {"chunk_size": 48, "window": 64}, "method"), lm)
    m.reset()
    m.ingest(_ctx(300))
    c = lm.model.config
    per_position = 2 * c.num_key_value_heads * c.head_dim * 4  # K and V of one layer, fp32
    held = [31 if t == "sliding_attention" else 64 for t in c.layer_types]
    assert m.state_bytes() == sum(held) * per_position


def test_deltamem_paper_protocol_kv_is_the_predicted_full_kv() -> None:
    """δ-mem's context + state protocol keeps the backbone's whole KV cache: its bytes beyond the r×r
    states are the full-KV prediction (sliding layers at their window), whatever the chunk size."""
    from harness.storage import storage_bytes
    from harness.study.scaling import model_layout
    from methods.deltamem import DeltaMem, DeltaMemConfig

    layout, _ = model_layout({"source": "tiny_random", "family": "gemma3"})
    for chunk in (24, 512):
        m = DeltaMem(DeltaMemConfig(adapter=None, chunk_size=chunk, window=None), tiny_lm("gemma3"))
        m.reset()
        m.ingest(_ctx(300))
        assert m.state_bytes() - storage_bytes(m.states()) == layout.bytes(301, 4)


@pytest.mark.slow
def test_full_kv_on_gemma3_270m_is_the_config_prediction(gemma) -> None:
    """The real layout (15 sliding layers of window 512, 3 global): a 1,500-token ingest in 512-token
    chunks (last chunk 476) holds exactly the predicted bytes, 511 positions per sliding layer."""
    from harness.study.scaling import model_layout

    cls = METHODS.get("full_kv")
    m = cls(build_config(cls.Config, {"chunk_size": 512}, "method"), gemma)
    m.reset()
    m.ingest(Context(prefix_ids=[2], chunk_ids=[[(i * 7) % 2000 + 300 for i in range(1499)]], chunk_texts=[""]))
    layout, why = model_layout({"source": "gemma3_gguf"})
    assert why is None and layout.layer_types.count("sliding_attention") == 15
    assert m.state_bytes() == layout.bytes(1500, 4) == (15 * 511 + 3 * 1500) * 2 * 256 * 4
