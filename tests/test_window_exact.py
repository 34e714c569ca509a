"""The windowed cache is exact under both position schemes.

``original``: chunked ingest with eviction equals one full forward under the equivalent attention
mask (sinks + the last ``window`` tokens before each chunk + causal in-chunk), at text positions.
``shifted`` (StreamingLLM): each chunk equals a fresh forward over just the retained tokens (sinks,
then the window) followed by the chunk, at contiguous positions 0, 1, 2, ...
"""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_lm
from harness.registry import ConfigError, build_config
from methods.window import SinkWindowLayer, Window, WindowConfig

IDS = [(i * 7) % 200 + 3 for i in range(100)]


def _window(lm, W: int, S: int, chunk: int, positions: str) -> Window:
    m = Window(build_config(WindowConfig, {"window": W, "sinks": S, "chunk_size": chunk, "positions": positions}, "method"), lm)
    m.reset()
    m.cache = m.make_cache()
    return m


def _ingest(m: Window, ids: list[int], chunk: int) -> torch.Tensor:
    """Logits [T, V] of every position, chunk by chunk through the method's cache (evicting after each)."""
    outs = []
    with torch.inference_mode():
        for s in range(0, len(ids), chunk):
            outs.append(m.lm.model(input_ids=torch.tensor([ids[s : s + chunk]]), cache=m.cache, use_cache=True).logits[0])
            m._track(m.cache)
    return torch.cat(outs)


@pytest.mark.parametrize("family", ["gemma3", "qwen3", "llama"])
@pytest.mark.parametrize("chunk", [1, 8])
def test_original_positions_match_masked_full_forward(family: str, chunk: int) -> None:
    lm = tiny_lm(family)
    W, S, T = 12, 4, 60
    ids = IDS[:T]
    m = _window(lm, W, S, chunk, "original")
    ours = _ingest(m, ids, chunk)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    visible = (j <= i) & ((j < S) | (j >= (i // chunk) * chunk - W))  # [T, T]
    with torch.inference_mode():
        ref = lm.model(input_ids=torch.tensor([ids]), attention_mask=visible[None, None]).logits[0]
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)
    assert m.cache.layers[0].keys.shape[-2] <= S + W


def shifted_reference(lm, ids: list[int], starts: list[int], W: int, S: int) -> torch.Tensor:
    """Logits [T, V] of StreamingLLM over ``ids`` fed in chunks beginning at ``starts``, from ONE
    full forward with explicit positions and an attention mask (no cache, no eviction).

    Under shifted positions a chunk's queries see the window at its true distances (the window is
    contiguous and ends right before them) but the sinks as if the evicted middle were not there.
    So each chunk that follows an eviction of ``e`` tokens gets its own copy of the sink tokens at
    positions ``e .. e+S-1``; a copy sees only its own group's earlier copies (so it computes what
    the sinks computed: RoPE is relative) and the chunk attends to it instead of the original sinks.
    Sliding layers (Gemma 3) additionally drop keys at a position distance of ``sliding_window`` or more.
    """
    T = len(ids)
    seq, pos, copies = list(ids), list(range(T)), {}
    for c, s in enumerate(starts):
        e = max(0, s - (S + W))  # tokens evicted before this chunk
        if e and S:
            copies[c] = torch.arange(len(seq), len(seq) + S)
            seq += ids[:S]
            pos += [e + j for j in range(S)]
    N = len(seq)
    vis = torch.zeros(N, N, dtype=torch.bool)  # [query, key]
    for c, (s, end) in enumerate(zip(starts, starts[1:] + [T])):
        for t in range(s, end):
            lo = S + max(0, s - (S + W))  # oldest window token still held (everything when nothing was evicted)
            vis[t, lo : t + 1] = True
            if c in copies:
                vis[t, copies[c]] = True
            else:
                vis[t, : min(S, t + 1)] = True
    for g in copies.values():
        vis[g[:, None], g[None, :]] = torch.tril(torch.ones(S, S, dtype=torch.bool))
    p = torch.tensor(pos)
    mask = vis[None, None]
    sw = getattr(lm.model.config, "sliding_window", None)
    if getattr(lm.model.config, "layer_types", None) and sw:
        mask = {"full_attention": mask, "sliding_attention": (vis & (p[:, None] - p[None, :] < sw))[None, None]}
    with torch.inference_mode():
        return lm.model(input_ids=torch.tensor([seq]), position_ids=p[None], attention_mask=mask).logits[0, :T]


# (window, sinks, chunk): gemma3's tiny model has 32-token sliding layers, so (40, 4) keeps them as
# sliding layers of the last 31 cached tokens and (20, 16) (31 > window) as full sink+window layers
SHIFTED_CASES = [(12, 4, 1), (12, 4, 8), (40, 4, 8), (20, 16, 8)]


@pytest.mark.parametrize("family", ["gemma3", "qwen3", "llama"])
@pytest.mark.parametrize("W, S, chunk", SHIFTED_CASES)
def test_shifted_positions_match_masked_full_forward(family: str, W: int, S: int, chunk: int) -> None:
    lm = tiny_lm(family)
    T = 100
    m = _window(lm, W, S, chunk, "shifted")
    ours = _ingest(m, IDS[:T], chunk)
    torch.testing.assert_close(ours, shifted_reference(lm, IDS[:T], list(range(0, T, chunk)), W, S), atol=5e-5, rtol=1e-4)
    for layer in m.cache.layers:
        assert isinstance(layer, SinkWindowLayer) and layer.held() <= S + W
        assert layer.get_seq_length() == S + W  # the next token goes right after the cache
        if layer.limit is not None:
            assert layer.held() == layer.limit == 31 and (family, W) == ("gemma3", 40)


def test_the_reference_is_not_a_fresh_run_over_the_retained_tokens() -> None:
    # keys and values of deeper layers were computed when their token saw its own history, so
    # re-running just the retained tokens is a different (and wrong) reference for >1 layer
    lm = tiny_lm("llama")
    W, S, T = 12, 4, 40
    ref = shifted_reference(lm, IDS[:T], list(range(T)), W, S)
    kept = IDS[:S] + IDS[T - 1 - W : T - 1]
    with torch.inference_mode():
        fresh = lm.model(input_ids=torch.tensor([kept + IDS[T - 1 : T]])).logits[0, -1]
    assert (fresh - ref[-1]).abs().max() > 1e-3


@pytest.mark.parametrize("family", ["gemma3", "llama"])
def test_schemes_agree_without_sinks_and_differ_with_them(family: str) -> None:
    # RoPE sees only query-key distances: with no sinks the retained block is contiguous either way
    lm = tiny_lm(family)
    T, chunk = 60, 4
    same = [_ingest(_window(lm, 12, 0, chunk, p), IDS[:T], chunk) for p in ("original", "shifted")]
    torch.testing.assert_close(same[0], same[1], atol=2e-5, rtol=1e-4)
    ms = [_window(lm, 12, 4, chunk, p) for p in ("original", "shifted")]
    apart = [_ingest(m, IDS[:T], chunk) for m in ms]
    assert ms[0].state_bytes() == ms[1].state_bytes() > 0  # un-rotated keys take the same bytes
    torch.testing.assert_close(apart[0][: 16 + chunk], apart[1][: 16 + chunk], atol=2e-5, rtol=1e-4)  # before the first gap
    assert (apart[0][-chunk:] - apart[1][-chunk:]).abs().max() > 1e-3  # after it, the gap changes the distances


@pytest.mark.parametrize("family", ["gemma3", "qwen3"])
def test_shifted_answers_as_the_masked_reference_decodes(family: str) -> None:
    from methods.base import Context, Question

    lm = tiny_lm(family)
    W, S, chunk, n_new = 12, 4, 8, 6
    ctx, q = IDS[:50], IDS[60:63]
    m = Window(build_config(WindowConfig, {"window": W, "sinks": S, "chunk_size": chunk, "positions": "shifted"}, "method"), lm)
    m.reset()
    m.ingest(Context(prefix_ids=[], chunk_ids=[ctx], chunk_texts=[""]))
    got = [int(t) for t in m.answer(Question(ids=q, text=""), n_new)]
    # the schedule answer() follows: context chunks, the question in one chunk, then one token per step
    ids = ctx + q + got[:-1]
    starts = list(range(0, len(ctx), chunk)) + [len(ctx)] + list(range(len(ctx) + len(q), len(ids)))
    ref = shifted_reference(lm, ids, starts, W, S)
    want = [int(ref[len(ctx) + len(q) - 1 + k].argmax()) for k in range(n_new)]
    assert got == want and m.attended_tokens() == S + W + len(q)


def test_positions_is_validated_and_named_in_reports() -> None:
    with pytest.raises(ConfigError, match=r"'method\.positions': 'shfted', did you mean 'shifted'\? expected original or shifted"):
        build_config(WindowConfig, {"positions": "shfted"}, "method")
    lm = tiny_lm("gemma3")
    for p, words in (("original", "original"), ("shifted", "StreamingLLM")):
        info = Window(build_config(WindowConfig, {"positions": p, "sinks": 4}, "method"), lm).describe()
        assert words in info["positions"] and info["sinks"] == 4 and info["window"] == 256


def test_shifted_refuses_a_rope_it_cannot_move(monkeypatch) -> None:
    lm = tiny_lm("llama")
    m = Window(build_config(WindowConfig, {"window": 16, "positions": "shifted"}, "method"), lm)
    m.validate(64)
    monkeypatch.setattr(lm.model.model.rotary_emb, "rope_type", "dynamic")  # frequencies that change with the length
    with pytest.raises(ConfigError, match=r"'method\.positions'.*RoPE type 'dynamic'.*use original"):
        m.validate(64)
    Window(build_config(WindowConfig, {"window": 16}, "method"), lm).validate(64)  # original positions need nothing
