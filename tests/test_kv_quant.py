"""KV-cache quantization (full_kv, method.kv_quantization=int8|int4): the error bound of the scheme,
int4 packing, bytes counted from the real storages, generation next to the unquantized cache (with
sliding-window layers), persist/restore, config errors, run name and hash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_lm
from transformers import DynamicCache

from harness.registry import ConfigError, build_config
from methods._kvquant import dequantize, quantize, quantized_cache
from methods._lm import cache_bytes, forward_chunks
from methods.base import Context, Question
from methods.full_kv import FullKV, FullKVConfig

HERE = Path(__file__).resolve().parent


def _data(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 7, 64, generator=g) * 2.0  # [B, H, L, D]
    x[0, 0, 0, 5] = 40.0  # an outlier widens its group's range only
    x[1, 2, 3] = 1.5  # a constant vector: scale 0, must come back exactly
    return x


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("group", [16, 32, 64])
def test_error_is_at_most_half_a_step_per_group(bits: int, group: int) -> None:
    x = _data()
    p = quantize(x, bits, group)
    assert p["data"].dtype == torch.uint8 and p["scale"].dtype == torch.float16 == p["zero"].dtype
    assert p["scale"].shape == (2, 3, 7, 64 // group)
    err = (dequantize(p, bits, torch.float32) - x).abs()  # [B, H, L, D]
    half = p["scale"].float().repeat_interleave(group, dim=-1) / 2
    assert (err <= half * (1 + 1e-5) + 1e-6).all()
    assert err[1, 2, 3].max() == 0  # constant vector
    # the step is what min-max gives (float16 rounding aside): range / (2**bits - 1)
    xs = x.reshape(2, 3, 7, 64 // group, group)
    step = (xs.amax(-1) - xs.amin(-1)) / (2**bits - 1)
    assert torch.allclose(p["scale"].float(), step, rtol=2e-3, atol=1e-6)


def test_int8_is_finer_than_int4() -> None:
    x = _data(1)
    e8 = (dequantize(quantize(x, 8, 32), 8, torch.float32) - x).abs().mean()
    e4 = (dequantize(quantize(x, 4, 32), 4, torch.float32) - x).abs().mean()
    assert 0 < e8 < e4 / 10


def test_int4_packs_two_values_a_byte() -> None:
    # one group of 16 channels holding 0..15: zero 0, scale 1, codes 0..15
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 1, 16).repeat(1, 2, 3, 1)
    p = quantize(x, 4, 16)
    assert p["data"].shape == (1, 2, 3, 8) and p["data"].dtype == torch.uint8
    expected = torch.tensor([(2 * j) | ((2 * j + 1) << 4) for j in range(8)], dtype=torch.uint8)
    assert torch.equal(p["data"][0, 0, 0], expected)  # channel 2j low nibble, 2j+1 high nibble
    assert torch.equal(dequantize(p, 4, torch.float32), x)
    assert quantize(x, 8, 16)["data"].shape == (1, 2, 3, 16)


def _expected_bytes(lm, n: int, bits: int, residual: int) -> int:
    """Bytes of a quantized cache after ``n`` tokens, from the shapes (tiny_random: fp32, H=2, D=16,
    one group per vector, sliding layers hold sliding_window - 1 tokens)."""
    c = lm.model.config
    h, d = c.num_key_value_heads, c.head_dim
    total = 0
    for kind in c.layer_types:
        held = min(n, c.sliding_window - 1) if kind == "sliding_attention" else n
        r = min(residual, held)
        q = held - r
        total += 2 * (q * h * (d * bits // 8 + 2 * 2) + r * h * d * 4)  # keys and values: data + fp16 scale/zero; residual fp32
    return total


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("residual", [0, 8, 40])
def test_state_bytes_are_the_quantized_storages(bits: int, residual: int) -> None:
    lm = tiny_lm("gemma3")
    ids = list(range(3, 103))  # 100 tokens, more than the sliding window (32)
    cache = quantized_cache(lm.model.config, bits, 64, residual)
    forward_chunks(lm.model, cache, ids, 16)
    assert cache_bytes(cache) == _expected_bytes(lm, 100, bits, residual)
    if residual == 0:  # fp32 row of D=16: 64 B -> int8 16 + 4, int4 8 + 4
        full = DynamicCache(config=lm.model.config)
        forward_chunks(lm.model, full, ids, 16)
        fp32 = sum(2 * 2 * 16 * 4 * (100 if k == "full_attention" else 31) for k in lm.model.config.layer_types)
        assert cache_bytes(cache) / fp32 == pytest.approx((20 if bits == 8 else 12) / 64)


def _method(lm, **kw) -> FullKV:
    return FullKV(build_config(FullKVConfig, {"chunk_size": 16, **kw}, "method"), lm)


def _sample(lm) -> tuple[Context, Question]:
    tok = lm.tokenizer
    chunks = ["the cat sat on the mat. " * 3, "the passkey is 48213. ", "grass is green. " * 3]
    ctx = Context(prefix_ids=[tok.bos_token_id], chunk_ids=[tok.encode(c, add_special_tokens=False) for c in chunks], chunk_texts=chunks)
    return ctx, Question(ids=tok.encode(" What is the passkey?", add_special_tokens=False), text="What is the passkey?")


def _answer(m: FullKV, ctx: Context, q: Question, n: int = 12) -> list[int]:
    m.reset()
    m.ingest(ctx)
    return [int(t) for t in m.answer(q, n)]


@pytest.mark.parametrize("family", ["gemma3", "llama"])
def test_generation_next_to_the_unquantized_cache(family: str) -> None:
    lm = tiny_lm(family)
    ctx, q = _sample(lm)  # ~120 tokens: the gemma3 sliding layers (window 32) drop quantized tokens
    ref = _answer(_method(lm), ctx, q)
    assert _answer(_method(lm, kv_quantization="int8", kv_residual=1000), ctx, q) == ref  # all in the residual: exact
    assert _answer(_method(lm, kv_quantization="int8", kv_residual=0), ctx, q) == ref
    # the next-token logits after the context: int8 error well below int4's, both nonzero
    ids = ctx.all_ids() + q.ids
    logits = {}
    for name, bits in (("ref", None), ("int8", 8), ("int4", 4)):
        cache = DynamicCache(config=lm.model.config) if bits is None else quantized_cache(lm.model.config, bits, 64, 0)
        logits[name] = forward_chunks(lm.model, cache, ids, 16)
    e8, e4 = ((logits[k] - logits["ref"]).abs().max().item() for k in ("int8", "int4"))
    assert 0 < e8 < 0.02 and e8 < e4 / 4


def test_restore_in_a_fresh_process_gives_the_same_tokens(tmp_path: Path) -> None:
    cases = json.dumps({"full_kv": {"chunk_size": 64, "kv_quantization": "int4", "kv_residual": 8}})
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")

    def side(mode: str) -> dict:
        res = subprocess.run([sys.executable, str(HERE / "_persist_child.py"), mode, str(tmp_path), "gemma3", cases],
                             capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads(res.stdout.strip().splitlines()[-1])["full_kv"]

    first, again = side("ingest"), side("restore")
    assert first["tokens"] and again["tokens"] == first["tokens"]
    meta = json.loads((tmp_path / "full_kv" / "meta.json").read_text())
    assert {la["quant"]["bits"] for la in meta["layers"]} == {4}
    # what was saved is the packed cache itself: its tensor bytes are the state bytes after ingest
    lm = tiny_lm("gemma3")
    m = _method(lm, kv_quantization="int4", kv_residual=8, chunk_size=64)
    m.reset()
    m.ingest(_persist_context(lm))
    assert first["parts"]["kv"] == m.state_bytes() > 0
    # restoring into another quantization is refused with a message naming the setting
    other = _method(lm, kv_quantization="int8", kv_residual=8)
    with pytest.raises(ValueError, match="kv_quantization"):
        other.load_memory(tmp_path / "full_kv")


def _persist_context(lm) -> Context:
    """The context tests/_persist_child.py ingests."""
    import _persist_child as pc

    ids = [lm.tokenizer.encode(c, add_special_tokens=False) for c in pc.CHUNKS]
    return Context(prefix_ids=[lm.tokenizer.bos_token_id], chunk_ids=ids, chunk_texts=pc.CHUNKS)


def test_bad_values_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"'method.kv_quantization': 'int9', did you mean 'int8'\?"):
        FullKVConfig(kv_quantization="int9")
    with pytest.raises(ConfigError, match="method.kv_group_size"):
        FullKVConfig(kv_quantization="int8", kv_group_size=48)
    with pytest.raises(ConfigError, match="method.kv_residual"):
        FullKVConfig(kv_quantization="int8", kv_residual=-1)


def test_other_methods_refuse_the_setting() -> None:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from harness.__main__ import precheck
    from harness.run import build

    with pytest.raises(ConfigError, match="'method.kv_quantization' for method 'window'.*method=full_kv"):
        precheck(["method=window", "method.kv_quantization=int8"])
    precheck(["method.kv_quantization=int8"])  # full_kv is the default method
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=tiny_random", "method=window", "+method.kv_quantization=int8"])
    with pytest.raises(ConfigError, match="'method.kv_quantization' for method 'window'"):
        build(cfg)


def test_run_name_and_hash_carry_the_setting() -> None:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    import harness.sweep  # noqa: F401  (resolvers)
    from harness.resume import config_hash

    def run(*overrides: str) -> tuple[str, str]:
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="configs", version_base="1.3"):
            cfg = compose(config_name="config", overrides=["model=tiny_random", "out_dir=/r", *overrides], return_hydra_config=True)
        job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        return str(cfg.hydra.run.dir), config_hash(job)

    plain_dir, plain = run()
    none_dir, none = run("method.kv_quantization=none")
    q8_dir, q8 = run("method.kv_quantization=int8")
    q4_dir, q4 = run("method.kv_quantization=int4")
    assert (none_dir, none) == (plain_dir, plain) and plain_dir == f"/r/full_kv_needle_tiny_random_{plain}"
    assert q8_dir == f"/r/full_kv_needle_tiny_random_kvint8_{q8}" and q4_dir.endswith(f"_kvint4_{q4}")
    assert len({plain, q8, q4}) == 3
    assert run("method.kv_quantization=int8", "method.kv_residual=0")[1] != q8
    assert run("method.kv_quantization=int8", "method.kv_group_size=64")[1] != q8
    assert run("method.kv_residual=0")[1] == plain  # inert while the cache is not quantized
    both_dir, both = run("model.quantization=int8", "method.kv_quantization=int4")
    assert both_dir == f"/r/full_kv_needle_tiny_random_wint8_kvint4_{both}"  # weight precision is tagged too
    # a result made before the settings existed (no kv_* keys) keeps its hash
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=tiny_random"])
    old = OmegaConf.to_container(cfg, resolve=True)
    for k in ("kv_quantization", "kv_group_size", "kv_residual"):
        del old["method"][k]
    assert config_hash(OmegaConf.create(old)) == plain


def test_precision_kv_preset_shares_its_unquantized_runs_with_precision() -> None:
    from test_sweep_presets import _runs

    from harness.launch import validate
    from harness.resume import config_hash

    def h(r) -> str:
        from omegaconf import OmegaConf

        return config_hash(OmegaConf.masked_copy(r, [k for k in r if k != "hydra"]))

    runs = _runs("precision_kv")
    got = {(r.task.name, r.model.dtype, r.method.kv_quantization) for r in runs}
    assert len(runs) == len(got) == 2 * 3 and {r.method.name for r in runs} == {"full_kv"}
    assert {r.model.dtype for r in runs} == {"float32"}
    for r in runs:
        validate(r)
    unquantized = {h(r) for r in runs if r.method.kv_quantization == "none"}
    precision = {h(r) for r in _runs("precision") if r.method.name == "full_kv" and r.model.quantization == "none"
                 and r.model.dtype == "float32"}
    assert len(unquantized) == 2 and unquantized == precision


@pytest.mark.parametrize("q", ["int8", "int4"])
def test_variants_compose_to_a_quantized_full_kv(q: str) -> None:
    from test_sweep_presets import _compose

    from harness.launch import validate

    cfg = _compose([f"+variant=full_kv_{q}", "model=tiny_random"])
    assert (cfg.method.name, cfg.method.kv_quantization, cfg.study.variant) == ("full_kv", q, f"full_kv_{q}")
    validate(cfg)


def test_table_renders_the_runs_from_their_summaries(tmp_path: Path) -> None:
    from _bench import script

    mod = script("kv_quant_table")

    def summary(q: str, state: int, acc: float) -> dict:
        mc = {"kv_quantization": q, "kv_group_size": 32, "kv_residual": 32}
        mt = {"ttft_query_s": {"p50": 0.5}, "ttft_cold_s": {"p50": 7.0}, "decode_tok_per_s": {"mean": 3.0}}
        return {"task": "passkey", "method_config": mc, "accuracy": {"mean": acc, "n": 3}, "metrics": mt,
                "memory": {"state_bytes": state, "working_bytes": 2**20, "required_bytes": 2**30}}

    lines = mod.runs_table([summary("int4", 1000, 2 / 3), summary("none", 4000, 1.0)]).splitlines()
    assert lines[2].startswith("| none | - | - | 1.00 (3) | 4,000 |") and "| 1.000 |" in lines[2]
    assert lines[3].startswith("| int4 | 32 | 32 | 0.67 (3) | 1,000 |") and "| 0.250 |" in lines[3]


@pytest.mark.slow
def test_int8_cache_on_the_default_model_answers_like_the_full_one() -> None:
    """Gemma 3 270M (sliding-window layers of 512): a ~700-token passkey prompt, greedy answer with
    the int8 cache (everything quantized) equals the unquantized one, and the state is the shape count."""
    from conftest import default_lm

    lm = default_lm()
    tok = lm.tokenizer
    filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. " * 30
    chunks = [filler[: len(filler) // 2], "The pass key is 72461. Remember it. 72461 is the pass key. ", filler[len(filler) // 2 :]]
    ctx = Context(prefix_ids=[tok.bos_token_id], chunk_ids=[tok.encode(c, add_special_tokens=False) for c in chunks], chunk_texts=chunks)
    q = Question(ids=tok.encode(" What is the pass key? The pass key is", add_special_tokens=False), text="")
    assert ctx.num_tokens > 512  # past the sliding window
    ref = _answer(_method(lm, chunk_size=256), ctx, q, 6)
    m = _method(lm, chunk_size=256, kv_quantization="int8", kv_residual=0)
    assert _answer(m, ctx, q, 6) == ref and "72461" in tok.decode(ref)
    m.reset()
    m.ingest(ctx)
    c, n = lm.model.config, ctx.num_tokens
    held = [min(n, c.sliding_window - 1) if k == "sliding_attention" else n for k in c.layer_types]
    d = c.head_dim
    assert m.state_bytes() == sum(2 * h * c.num_key_value_heads * (d + 4 * d // 32) for h in held)
