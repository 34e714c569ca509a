"""δ-mem on tiny random models: exactness at zero state, chunking invariance, read-before-write,
padding, explicit resets, write modes, constant state bytes, and the method contract."""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILIES, tiny_lm

from harness.registry import ConfigError
from methods._deltamem import attach, detach, queue_ids, read_state, reset_state, set_default_write
from methods._deltamem.layer import Io, MemoryLayer, Spec


@pytest.fixture
def attached(request):
    """attach(model, **kw) that is always detached again (the tiny models are shared between tests)."""
    models = []

    def _attach(model, **kw):
        models.append(model)
        return attach(model, **kw)

    yield _attach
    for m in models:
        if "_delta_mem" in m.__dict__:
            detach(m)


def _ids(n, seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 250, (batch, n), generator=g)


@torch.no_grad()
def test_zero_state_is_exactly_the_bare_model(tiny, attached):
    m, x = tiny.model, _ids(48)
    bare = m(input_ids=x).logits
    attached(m)
    set_default_write(m, False)  # nothing written: the state stays 0, every correction is exactly 0
    assert torch.equal(m(input_ids=x).logits, bare)
    set_default_write(m, True)
    reset_state(m)
    first = m(input_ids=x[:, :1]).logits  # token 0 reads S_0 = 0 before its own write
    assert torch.allclose(first, bare[:, :1], atol=1e-6)
    reset_state(m)
    out = m(input_ids=x).logits
    assert not torch.allclose(out, bare, atol=1e-4)  # later tokens read what earlier ones wrote
    assert all(s.abs().max() > 0 for s in read_state(m).values())
    detach(m)
    assert torch.equal(m(input_ids=x).logits, bare)  # detached: bare again


@torch.no_grad()
def test_tsw_chunking_invariance_with_cache(tiny, attached):
    from transformers import DynamicCache

    m, x = tiny.model, _ids(70, seed=1)  # longer than the tiny Gemma's sliding window (32)
    attached(m)
    one = m(input_ids=x, cache=DynamicCache(config=m.config), use_cache=True).logits[:, -1]
    s_one = {i: s.clone() for i, s in read_state(m).items()}
    reset_state(m)
    cache = DynamicCache(config=m.config)
    for a in range(0, 70, 25):
        last = m(input_ids=x[:, a:a + 25], cache=cache, use_cache=True).logits[:, -1]
    assert torch.allclose(last, one, atol=1e-4)
    for i, s in read_state(m).items():
        assert s.shape == (1, 1, 8, 8) and s.dtype == torch.float32
        assert torch.allclose(s, s_one[i], atol=1e-5)
    # decode steps (kernels.deltamem.step) continue a chunked prefill exactly
    reset_state(m)
    cache = DynamicCache(config=m.config)
    m(input_ids=x[:, :58], cache=cache, use_cache=True)
    for t in range(58, 70):
        last = m(input_ids=x[:, t:t + 1], cache=cache, use_cache=True).logits[:, -1]
    assert torch.allclose(last, one, atol=1e-4)
    for i, s in read_state(m).items():
        assert torch.allclose(s, s_one[i], atol=1e-5)


def test_read_before_write():
    torch.manual_seed(0)
    layer = MemoryLayer(Spec(), d=16, q_out=16, kv_out=8, layer_idx=0)
    x = torch.randn(1, 12, 16) * 3
    ids = torch.zeros(1, 12, dtype=torch.long)
    with torch.no_grad():
        r_all = layer.read_write(x, Io(ids=ids))
        layer.reset()
        ids[0, 5] = -1  # token 5 does not write
        r_skip = layer.read_write(x, Io(ids=ids))
    assert torch.equal(r_all[0, 0], torch.zeros(8))  # token 0 reads S_0 = 0
    assert torch.allclose(r_all[0, :6], r_skip[0, :6], atol=1e-6)  # token 5's read ignores its own write
    assert not torch.allclose(r_all[0, 6:], r_skip[0, 6:], atol=1e-4)  # later tokens see it


def test_inference_decode_matches_the_differentiable_step():
    """The inference decode path (cached operands, corrections as one addmm per head) gives the
    reads, state and corrected outputs of the differentiable path, token after token."""
    torch.manual_seed(0)
    layer = MemoryLayer(Spec(rank=8, num_states=2, heads=("q", "k", "o")), d=16, q_out=24, kv_out=8, layer_idx=0)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    xs, outs = torch.randn(5, 2, 1, 16), {"q": torch.randn(2, 1, 24), "k": torch.randn(2, 1, 8), "o": torch.randn(2, 1, 16)}
    valid = torch.tensor([[True], [False]])
    got, want = [], []
    for mode, res in (("inference", got), ("grad", want)):
        layer.reset()
        for t, x in enumerate(xs):
            io = Io(valid=valid if t == 3 else None, ids=torch.tensor([[0], [-1 if t == 2 else 0]]))
            with torch.inference_mode(mode == "inference"):
                layer._reads = layer.read_write(x, io)
                res.append([layer._reads, layer.state] + [layer.correction(h, o) for h, o in outs.items()])
    assert layer._dts is None and got[-1][1].abs().max() > 0
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            assert torch.allclose(a, b.detach(), rtol=1e-5, atol=1e-6)
    assert torch.equal(got[2][1][1], got[1][1][1])  # sequence 1 not written at t = 2: held exactly
    assert torch.equal(got[3][0][1], torch.zeros(1, 16))  # padding at t = 3 reads zero


def test_multi_token_forward_does_not_sync(monkeypatch):
    """A prefill chunk decides what it writes from what the host knows (Io.writes), never by
    reading a device tensor back (bool/item/tolist would stall a GPU once per layer)."""
    from torch.overrides import TorchFunctionMode

    class NoSync(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            assert name not in ("__bool__", "item", "tolist", "__int__", "__float__", "nonzero"), name
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    layer = MemoryLayer(Spec(), d=16, q_out=16, kv_out=8, layer_idx=0)
    x = torch.randn(1, 12, 16)
    with torch.no_grad():
        ref = layer.read_write(x, Io(ids=torch.zeros(1, 12, dtype=torch.long)))
        s_ref = layer.state
        for writes, ids in ((True, torch.zeros(1, 12, dtype=torch.long)), (None, torch.zeros(1, 12, dtype=torch.long)),
                            (False, None)):
            layer.reset()
            with NoSync():
                r = layer.read_write(x, Io(ids=ids, writes=writes))
            if writes is False:
                assert torch.equal(layer.state, torch.zeros(1, 1, 8, 8)) and torch.equal(r, torch.zeros_like(r))
            else:
                assert torch.allclose(r, ref, atol=1e-6) and torch.allclose(layer.state, s_ref, atol=1e-6)


def test_batched_decode_writes_match_the_per_layer_step(attached):
    """Inference decode (every layer reads, then all layers are written at once after the forward)
    gives the logits and states of the differentiable per-layer step, token after token; a held
    sequence (padding) keeps its state bit for bit, and a forward that raises writes nothing."""
    from methods._deltamem.attach import get_adapter

    torch.manual_seed(0)
    m = tiny_lm("qwen3").model
    ad = attached(m, num_states=2)
    with torch.no_grad():
        for p in ad.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    x = _ids(6, seed=4, batch=2)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4] = 0  # sequence 1 has a pad at token 4: neither read nor written there
    runs = {}
    for mode in ("inference", "grad"):
        reset_state(m)
        logits, states = [], []
        with torch.inference_mode(mode == "inference"), torch.set_grad_enabled(mode == "grad"):
            for t in range(6):
                logits.append(m(input_ids=x[:, t:t + 1], attention_mask=mask[:, : t + 1]).logits.detach())
                states.append({i: s.detach().clone() for i, s in read_state(m).items()})
        runs[mode] = logits, states
    assert ad._state_stack is None  # the grad run took the per-layer path and replaced the states
    for (lg, sg), (lw, sw) in zip(zip(*runs["inference"]), zip(*runs["grad"])):
        assert torch.allclose(lg, lw, atol=1e-5)
        for i in sg:
            assert torch.allclose(sg[i], sw[i], rtol=1e-5, atol=1e-5)  # same math, sums in another order
    li, si = runs["inference"]
    assert all(torch.equal(si[4][i][1], si[3][i][1]) for i in si[4])  # pad: held bit for bit
    assert not all(torch.equal(si[4][i][0], si[3][i][0]) for i in si[4])
    # the inference run's states are views of one stacked tensor; a failed forward leaves them as they were
    with torch.inference_mode():
        reset_state(m)
        m(input_ids=x[:, :1])
        m(input_ids=x[:, 1:2])
        assert get_adapter(m)._state_stack is not None
        before = {i: s.clone() for i, s in read_state(m).items()}
        layer = ad.layers["1"]
        layer.decode, calls = (lambda *a: (_ for _ in ()).throw(RuntimeError("boom"))), layer.decode
        try:
            with pytest.raises(RuntimeError, match="boom"):
                m(input_ids=x[:, 2:3])
        finally:
            del layer.decode
        assert all(torch.equal(s, before[i]) for i, s in read_state(m).items())


@torch.no_grad()
def test_padding_neither_reads_nor_writes(attached):
    m = tiny_lm("llama").model
    attached(m)
    x = _ids(20, seed=2)
    m(input_ids=x)
    ref = {i: s.clone() for i, s in read_state(m).items()}
    reset_state(m)
    padded = torch.cat([torch.zeros(1, 5, dtype=torch.long), x], 1)
    mask = torch.cat([torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 20, dtype=torch.long)], 1)
    pos = torch.cat([torch.zeros(1, 5, dtype=torch.long), torch.arange(20)[None]], 1)
    m(input_ids=padded, attention_mask=mask, position_ids=pos)
    for i, s in read_state(m).items():
        assert torch.allclose(s, ref[i], atol=1e-4), i
    layer = next(iter(m.__dict__["_delta_mem"].layers.values()))
    reset_state(m)
    r = layer.read_write(torch.randn(1, 6, 64), Io(valid=torch.tensor([[0, 0, 1, 1, 1, 1]], dtype=torch.bool), ids=torch.zeros(1, 6, dtype=torch.long)))
    assert torch.equal(r[0, :3], torch.zeros(3, 8))  # pads read zero; the first real token reads S_0 = 0


@torch.no_grad()
def test_resets_are_explicit(attached):
    m = tiny_lm("qwen3").model
    attached(m)
    m(input_ids=_ids(8))
    with pytest.raises(RuntimeError, match="reset_state"):
        m(input_ids=_ids(8, batch=2))
    reset_state(m)
    m(input_ids=_ids(8, batch=2))
    assert read_state(m)[0].shape[0] == 2


@torch.no_grad()
def test_ssw_needs_message_ids_and_writes_once_per_message(attached):
    m = tiny_lm("qwen3").model
    attached(m, granularity="message")
    with pytest.raises(ConfigError, match="message ids"):
        m(input_ids=_ids(10))
    reset_state(m)
    queue_ids(m, [-1, 0, 0, 0, 1, 1, 1, 1, -1, -1])
    m(input_ids=_ids(10))
    s = read_state(m)[0]
    layer = m.__dict__["_delta_mem"].layers["0"]
    assert s.abs().max() > 0
    # -1 tokens are never written: a call with only -1 ids keeps the state
    queue_ids(m, [-1] * 4)
    m(input_ids=_ids(4, seed=3))
    assert torch.equal(read_state(m)[0], s)
    assert layer.spec.granularity == "message"


@torch.no_grad()
def test_msw_shapes(attached):
    m = tiny_lm("gemma3").model
    ad = attached(m, num_states=4)
    m(input_ids=_ids(30))
    for i, s in read_state(m).items():
        assert s.shape == (1, 4, 8, 8)
    layer = ad.layers["0"]
    assert layer.memory_q_proj.weight.shape == (32, 64)
    assert layer.delta["q"].weight.shape == (64, 32) and layer.delta["o"].weight.shape == (64, 32)
    assert torch.all(layer.delta["o"].weight[:, 8:] == 0)  # only the first r columns get the base slice


def test_init_from_base_slices(attached):
    m = tiny_lm("llama").model
    ad = attached(m)
    attn = m.model.layers[1].self_attn
    w = ad.layers["1"].delta["q"].weight
    ref = torch.nn.functional.normalize(attn.q_proj.weight[:, :8], dim=0) * 0.05
    assert torch.allclose(w, ref)
    assert torch.all(ad.layers["1"].beta_proj.weight == 0) and torch.all(ad.layers["1"].beta_bias == -1.5)
    assert ad.layers["1"].scale == 2.0


# -- the harness method -------------------------------------------------------------------------


def _method(lm, **kw):
    from methods.deltamem import DeltaMem, DeltaMemConfig

    return DeltaMem(DeltaMemConfig(**{"adapter": None, "chunk_size": 64, **kw}), lm)


def _context(n_chunks=1, tokens=200, seed=0):
    from methods.base import Context

    ids = _ids(tokens, seed=seed)[0].tolist()
    step = -(-tokens // n_chunks)
    chunks = [ids[i:i + step] for i in range(0, tokens, step)]
    return Context(prefix_ids=[1], chunk_ids=chunks, chunk_texts=["x"] * len(chunks))


def test_method_contract(tiny):
    from methods.base import Question

    meth = _method(tiny, window=64)
    meth.validate(201)
    meth.reset()
    meth.ingest(_context())
    toks = list(meth.answer(Question(ids=[10, 11, 12], text="q"), 5))
    assert 1 <= len(toks) <= 5 and all(isinstance(int(t), int) for t in toks)
    assert meth.state_bytes() > 0 and meth.state_bytes_peak() >= meth.state_bytes() - 8 * 4 * 8 * 8 * 4
    assert meth.extra_bytes() > 0 and meth.attended_tokens() <= 64 + 3 + 5
    assert "_delta_mem" not in tiny.model.__dict__  # hooks only while ingesting/answering
    assert meth.describe()["protocol"].startswith("state-only")
    with pytest.raises(ConfigError, match="method.window"):
        meth.validate(50)
    assert meth.describe()["kernel"] == "reference (auto: no CUDA)"


def test_kernel_setting(tiny, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ConfigError, match="method.kernel"):
        _method(tiny, window=64, kernel="triton").validate(201)
    with pytest.raises(ConfigError, match="method.kernel"):
        _method(tiny, window=64, kernel="cuda")
    meth = _method(tiny, window=64, kernel="reference")
    assert meth.ad.impl == "reference" and meth.describe()["kernel"] == "reference"


def test_state_bytes_constant_while_full_kv_grows():
    from harness.storage import storage_bytes

    lm = tiny_lm("qwen3")
    paper, window = _method(lm, window=None), _method(lm, window=32)
    rows = []
    for n in (100, 200):
        for meth in (paper, window):
            meth.reset()
            meth.ingest(_context(tokens=n))
            rows.append((storage_bytes(meth.states()), meth.state_bytes()))
    (sp1, tp1), (sw1, tw1), (sp2, tp2), (sw2, tw2) = rows
    assert sp1 == sw1 == sp2 == sw2 == 4 * 8 * 8 * 4  # 4 layers × r×r fp32, whatever the context
    assert tp2 > tp1  # context + state: the KV grows with the context
    assert tw2 == tw1  # state-only: window KV + state, constant


def test_write_during_decode_flag(tiny):
    from methods.base import Question

    for flag in (True, False):
        meth = _method(tiny, window=None, write_during_decode=flag)
        meth.reset()
        meth.ingest(_context(tokens=80))
        before = [s.clone() for s in meth.states()]
        list(meth.answer(Question(ids=[10, 11], text="q"), 4))
        same = all(torch.equal(a, b) for a, b in zip(before, meth.states()))
        assert same != flag  # the question is never written; decode tokens only when the flag is on


def test_ssw_method_error_and_reported_fallback():
    lm = tiny_lm("llama")
    meth = _method(lm, write_mode="ssw", window=None)
    meth.reset()
    with pytest.raises(ConfigError, match="ssw_fallback"):
        meth.ingest(_context(n_chunks=1))
    meth.reset()
    meth.ingest(_context(n_chunks=3))  # three messages: fine
    assert meth.describe()["ssw_fallback_samples"] == 0
    fb = _method(lm, write_mode="ssw", window=None, ssw_fallback="tsw")
    fb.reset()
    fb.ingest(_context(n_chunks=1))
    assert fb.describe()["ssw_fallback_samples"] == 1


def test_through_harness_execute(tmp_path):
    from omegaconf import OmegaConf

    from harness.run import execute

    cfg = OmegaConf.create({
        "model": {"name": "tiny_random", "source": "tiny_random", "family": "gemma3", "dtype": "float32", "device": "cpu"},
        "method": {"name": "deltamem", "window": 64, "chunk_size": 64},
        "task": {"name": "passkey", "context_lengths": [200], "depths": [50]},
        "run": {"limit": 1, "progress": False, "warmup": 0},
    })
    s = execute(cfg, tmp_path)
    assert s["status"] == "ok", s["error"]
    assert (tmp_path / "samples.jsonl").exists()


@torch.no_grad()
def test_generate_with_left_padding(attached):
    m = tiny_lm("qwen3").model
    attached(m)
    x = _ids(12, seed=4, batch=2)
    mask = torch.ones(2, 12, dtype=torch.long)
    x[1, :4], mask[1, :4] = 0, 0  # row 1 is left-padded
    out = m.generate(input_ids=x, attention_mask=mask, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape == (2, 15)
    s = read_state(m)[0]
    assert s.shape == (2, 1, 8, 8) and torch.isfinite(s).all()
