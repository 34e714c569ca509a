"""δ-mem adapter files (ours and the official format) and a two-step training smoke test."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_lm
from test_deltamem import _ids, attached  # noqa: F401  (fixtures)

from harness.registry import ConfigError
from methods._deltamem import attach, detach, read_state, reset_state
from methods._deltamem.adapter import save

D, Q, KV, R = 64, 64, 32, 8  # tiny Qwen3: hidden 64, 4 heads × 16, 2 kv heads × 16


def _official(folder, heads=("q", "o"), cfg_extra=None, n_layers=4, nonzero_k=False):
    g = torch.Generator().manual_seed(0)
    sd = {}
    for i in range(n_layers):
        p = f"model.layers.{i}.self_attn."
        for name, shape in (("memory_q_proj", (R, D)), ("memory_k_proj", (R, D)), ("memory_v_proj", (R, D)), ("beta_proj", (R, D)),
                            ("beta_bias", (R,)), ("delta_q_proj", (Q, R)), ("delta_o_proj", (D, R)), ("delta_k_proj", (KV, R)), ("delta_v_proj", (KV, R))):
            t = torch.randn(shape, generator=g) * 0.1
            if name in ("delta_k_proj", "delta_v_proj") and not nonzero_k:
                t = torch.zeros(shape)  # "qo": saved anyway, zeros
            sd[p + name] = t
    torch.save(sd, folder / "delta_mem_adapter.pt")
    cfg = {"rank": R, "alpha": 16.0, "delta_heads": list(heads), "num_state_heads": 1, "memory_write_granularity": "token",
           "state_update_mode": "standard", "couple_lambda": True, "rankwise_gates": True, "normalize_qk": True,
           "beta_bias_init": -1.5, "target_layers": [], "delta_o_rmsnorm": False, "trainable_delta_scale": False, **(cfg_extra or {})}
    (folder / "delta_mem_config.json").write_text(json.dumps(cfg))
    return sd


@torch.no_grad()
def test_official_format_loads_on_qwen3(tmp_path, attached):
    sd = _official(tmp_path)
    m = tiny_lm("qwen3").model
    ad = attached(m, adapter=tmp_path)
    layer = ad.layers["2"]
    assert torch.equal(layer.memory_k_proj.weight, sd["model.layers.2.self_attn.memory_k_proj"])
    assert torch.equal(layer.beta_bias, sd["model.layers.2.self_attn.beta_bias"])
    assert torch.equal(layer.delta["o"].weight, sd["model.layers.2.self_attn.delta_o_proj"])
    assert set(layer.delta) == {"q", "o"}
    m(input_ids=_ids(20))
    assert read_state(m)[2].abs().max() > 0


@pytest.mark.parametrize("bad", [{"state_update_mode": "lambda_outside"}, {"delta_o_rmsnorm": True}, {"couple_lambda": False},
                                 {"memory_write_granularity": "sentence_mean"}, {"trainable_delta_scale": True}])
def test_official_unsupported_config_is_refused(tmp_path, bad):
    _official(tmp_path, cfg_extra=bad)
    m = tiny_lm("qwen3").model
    with pytest.raises(ConfigError, match=next(iter(bad))):
        attach(m, adapter=tmp_path)
    assert "_delta_mem" not in m.__dict__  # nothing left half-attached


def test_official_heads_default_and_nonzero_excluded_branch(tmp_path, attached):
    _official(tmp_path, heads=("q", "o"), nonzero_k=True)
    m = tiny_lm("qwen3").model
    with pytest.raises(ConfigError, match="delta_k_proj"):
        attach(m, adapter=tmp_path)
    cfg = json.loads((tmp_path / "delta_mem_config.json").read_text())
    del cfg["delta_heads"]  # absent: the official default is all four heads
    (tmp_path / "delta_mem_config.json").write_text(json.dumps(cfg))
    ad = attached(m, adapter=tmp_path)
    assert set(ad.layers["0"].delta) == {"q", "k", "v", "o"}
    with torch.no_grad():
        m(input_ids=_ids(12))


def test_official_only_for_qwen3(tmp_path):
    _official(tmp_path)
    with pytest.raises(ConfigError, match="Qwen3"):
        attach(tiny_lm("llama").model, adapter=tmp_path)


@torch.no_grad()
def test_our_format_roundtrip(tmp_path, attached):
    m = tiny_lm("gemma3").model
    ad = attached(m, num_states=2)
    for p in ad.parameters():
        p.add_(torch.randn_like(p) * 0.05)  # not the init
    x = _ids(40)
    ref = m(input_ids=x).logits
    save(m, tmp_path / "a", extra={"training": {"steps": 0}})
    detach(m)
    ad2 = attached(m, adapter=tmp_path / "a")
    assert ad2.spec.num_states == 2 and ad2.info["training"] == {"steps": 0}
    reset_state(m)
    assert torch.allclose(m(input_ids=x).logits, ref, atol=1e-6)
    detach(m)
    with pytest.raises(ConfigError, match="trained for"):
        attach(tiny_lm("llama").model, adapter=tmp_path / "a")


def test_method_adapter_config_mismatch(tmp_path, attached):
    from methods.deltamem import DeltaMem, DeltaMemConfig

    lm = tiny_lm("qwen3")
    attached(lm.model, rank=4)
    save(lm.model, tmp_path / "r4")
    detach(lm.model)
    with pytest.raises(ConfigError, match="rank"):
        DeltaMem(DeltaMemConfig(adapter=str(tmp_path / "r4")), lm)
    meth = DeltaMem(DeltaMemConfig(adapter=str(tmp_path / "r4"), rank=4), lm)
    assert "trained adapter" in meth.describe()["adapter"]
    assert "fresh init" in DeltaMem(DeltaMemConfig(), lm).describe()["adapter"]  # no shipped adapter for tiny_random


def test_train_two_steps_and_resume(tmp_path):
    from methods._deltamem.train import TrainConfig, train
    from methods.deltamem import DeltaMemConfig

    lm = tiny_lm("llama")
    tc = TrainConfig(steps=2, lengths=[24, 48], eval_every=2, eval_episodes=1, eval_length=32, ckpt_every=1,
                     ckpt_dir=str(tmp_path / "ck"), out=str(tmp_path / "out"), progress=False, max_minutes=0.0)
    tc.history_kv = True  # the paper-protocol variant runs too
    tc.aux = 1.0  # and the read-out probe loss
    first = train(lm, DeltaMemConfig(adapter=None), tc)  # stops after one step (time budget), checkpointed
    assert first == {"finished": False, "step": 1}
    tc.max_minutes = None
    rec = train(lm, DeltaMemConfig(adapter=None), tc)  # resumes
    assert rec["finished"] and rec["steps"] == 2 and "_delta_mem" not in lm.model.__dict__
    meta = json.loads((tmp_path / "out" / "adapter.json").read_text())
    assert meta["training"]["steps"] == 2 and "heldout_trained" in meta["training"] and meta["training"]["data"]["generator"]
    assert [p["step"] for p in meta["training"]["curve"]] == [0, 2] and meta["training"]["cpu_minutes"] >= 0
    assert 0 <= meta["training"]["curve"][-1]["probe_true"] <= 1


def test_method_uses_the_shipped_adapter_for_its_model(tmp_path, monkeypatch, attached):
    import methods.deltamem as dm

    lm = tiny_lm("gemma3")
    attached(lm.model)
    save(lm.model, tmp_path / "shipped", extra={"training": {"steps": 7}})
    detach(lm.model)
    attached(lm.model, rank=16)
    save(lm.model, tmp_path / "r16", extra={"training": {"steps": 9, "command": "python -m harness.train x"}})
    detach(lm.model)
    monkeypatch.setitem(dm.SHIPPED_FOR, "tiny_random", {"state_only": {8: tmp_path / "shipped", 16: tmp_path / "r16"}})
    meth = dm.DeltaMem(dm.DeltaMemConfig(), lm)  # adapter: auto
    assert "trained adapter" in meth.describe()["adapter"] and meth.ad.info["training"] == {"steps": 7}
    r16 = dm.DeltaMem(dm.DeltaMemConfig(rank=16), lm).describe()  # the rank picks the adapter
    assert str(tmp_path / "r16") in r16["adapter"] and r16["adapter_training"] == {"steps": 9, "command": "python -m harness.train x"}
    assert "fresh init" in dm.DeltaMem(dm.DeltaMemConfig(rank=4), lm).describe()["adapter"]  # none shipped for rank 4
    paper = dm.DeltaMem(dm.DeltaMemConfig(window=None), lm)  # no adapter shipped for this protocol: fresh, reported
    assert "fresh init" in paper.describe()["adapter"]
    msw = dm.DeltaMem(dm.DeltaMemConfig(write_mode="msw"), lm)  # the shipped one is TSW: fresh init, reported
    assert "fresh init" in msw.describe()["adapter"] and msw.ad.spec.num_states == 4


def test_eval_only_with_mismatched_control(tmp_path):
    from methods._deltamem.train import TrainConfig, evaluate_adapter
    from methods.deltamem import DeltaMemConfig

    lm = tiny_lm("qwen3")
    tc = TrainConfig(eval_episodes=2, eval_length=24)
    out = evaluate_adapter(lm, DeltaMemConfig(adapter=None), tc)
    row = out["rows"][0]
    assert set(out) == {"adapter", "split", "rows"} and row["episodes"] == 2 and row["tokens"] == 24
    for c in ("true", "mismatched", "none"):
        lo, hi = row[c]["per_digit_ci95"]
        assert 0 <= lo <= row[c]["per_digit"] <= hi <= 1
    assert "_delta_mem" not in lm.model.__dict__
