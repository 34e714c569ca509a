"""Part 1 of the study: the capacity protocol's known limits, the kernel path against a plain loop,
and the committed table against an independent re-computation (plain numpy, other random draws)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.study.mechanism import Grid, MIN_TRIALS, RANKS, N_PAIRS, SETTINGS, correct, reads, run, unit_vectors

TABLE = Path(__file__).resolve().parents[1] / "docs" / "study" / "mechanism_capacity.csv"
AGES = TABLE.with_name("mechanism_age.csv")


def _orthonormal(trials: int, n: int, r: int, seed: int = 0) -> torch.Tensor:
    """[trials, n, r] with orthonormal keys per trial (n ≤ r)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(trials, r, r, generator=g, dtype=torch.float64))
    return q.transpose(1, 2)[:, :n].float().contiguous()


@pytest.mark.parametrize("rule,beta", SETTINGS)
def test_one_pair_is_always_recalled(rule: str, beta: float | None) -> None:
    gen = torch.Generator().manual_seed(1)
    k, v = unit_vectors(gen, 50, 1, 8), unit_vectors(gen, 50, 1, 8)
    assert correct(reads(rule, beta, k, v), v).all()


@pytest.mark.parametrize("r,n", [(8, 8), (16, 5), (32, 32)])
def test_orthogonal_keys_give_exact_reads_up_to_the_decay(r: int, n: int) -> None:
    keys = _orthonormal(4, n, r)
    values = unit_vectors(torch.Generator().manual_seed(2), 4, n, r)
    assert torch.allclose(reads("linear", None, keys, values), values, atol=1e-5)  # Σ v kᵀ k_i = v_i
    assert torch.allclose(reads("delta", 1.0, keys, values), values, atol=1e-5)  # β = 1 stores each pair exactly
    for beta in (0.1, 0.5):  # δ-mem: the pair written `age` writes ago is scaled by β (1 − β)^age, direction kept
        scale = torch.tensor([beta * (1 - beta) ** (n - 1 - i) for i in range(n)])[None, :, None]
        assert torch.allclose(reads("deltamem", beta, keys, values), scale * values, atol=1e-5)
    for rule, beta in SETTINGS:
        if rule == "deltamem" and beta * (1 - beta) ** (n - 1) < 1e-4:
            continue  # the oldest pair has faded below fp32 rounding of the state (0.5 · 0.5^31 ≈ 2e-10)
        assert correct(reads(rule, beta, keys, values), values).all()


def test_beyond_r_pairs_linear_attention_is_no_longer_exact() -> None:
    gen = torch.Generator().manual_seed(3)
    k, v = unit_vectors(gen, 200, 32, 8), unit_vectors(gen, 200, 32, 8)
    acc = correct(reads("linear", None, k, v), v).double().mean().item()
    assert 1 / 32 < acc < 0.9


def _numpy_deltamem(keys: np.ndarray, values: np.ndarray, beta: float) -> np.ndarray:
    """Token by token, one trial at a time: S ← (1 − β) S + β (v − S k) kᵀ, then S k_i."""
    out = np.empty_like(keys)
    for t in range(keys.shape[0]):
        S = np.zeros((keys.shape[2], keys.shape[2]))
        for k, v in zip(keys[t], values[t]):
            S = (1 - beta) * S + beta * np.outer(v - S @ k, k)
        out[t] = keys[t] @ S.T
    return out


def test_kernel_path_equals_a_plain_loop() -> None:
    gen = torch.Generator().manual_seed(4)
    k, v = unit_vectors(gen, 6, 20, 16), unit_vectors(gen, 6, 20, 16)
    got = reads("deltamem", 0.3, k, v).double().numpy()
    assert np.allclose(got, _numpy_deltamem(k.double().numpy(), v.double().numpy(), 0.3), atol=1e-5)


def _independent(rule: str, beta: float | None, r: int, n: int, trials: int = 200, seed: int = 987) -> float:
    """The protocol from scratch: numpy draws, a loop over pairs, cosine argmax."""
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((trials, n, r))
    keys /= np.linalg.norm(keys, axis=-1, keepdims=True)
    values = rng.standard_normal((trials, n, r))
    values /= np.linalg.norm(values, axis=-1, keepdims=True)
    S = np.zeros((trials, r, r))
    for i in range(n):
        k, v = keys[:, i], values[:, i]
        if rule == "linear":
            S = S + v[:, :, None] * k[:, None, :]
            continue
        err = v - np.einsum("tab,tb->ta", S, k)
        decay = (1 - beta) if rule == "deltamem" else 1.0
        S = decay * S + beta * err[:, :, None] * k[:, None, :]
    out = np.einsum("tab,tnb->tna", S, keys)
    cos = np.einsum("tna,tma->tnm", out, values) / np.linalg.norm(out, axis=-1, keepdims=True)
    return float((cos.argmax(-1) == np.arange(n)).mean())


@pytest.mark.skipif(not TABLE.is_file(), reason="docs/study/mechanism_capacity.csv not rendered")
def test_committed_table_has_the_protocols_grid_and_columns() -> None:
    df = pd.read_csv(TABLE)
    assert {"rule", "beta", "r", "n_pairs", "accuracy", "trials", "ci_low", "ci_high"} <= set(df.columns)
    assert set(df["rule"]) == {"linear", "delta", "deltamem"}
    assert (df["trials"] >= MIN_TRIALS).all()
    assert len(df) == len(SETTINGS) * len(RANKS) * len(N_PAIRS)
    assert (df.loc[df["n_pairs"] == 1, "accuracy"] == 1).all()
    assert ((df["ci_low"] <= df["accuracy"]) & (df["accuracy"] <= df["ci_high"])).all()
    assert (df["ci_high"] > df["ci_low"]).all()  # never zero width, even where every trial is exact (N = 1)
    assert df.loc[df["n_pairs"] == 1, "ci_low"].between(0.98, 0.99).all()  # Wilson over 256 exact trials
    ages = pd.read_csv(AGES)
    assert set(ages["rule"]) == {"deltamem"} and len(ages) == 2 * len(RANKS) * sum(N_PAIRS)


@pytest.mark.skipif(not TABLE.is_file(), reason="docs/study/mechanism_capacity.csv not rendered")
@pytest.mark.parametrize("rule,beta,r,n", [("deltamem", 0.1, 16, 16), ("deltamem", 0.5, 64, 8), ("deltamem", 0.5, 8, 4),
                                           ("delta", 0.5, 32, 32), ("delta", 1.0, 8, 8), ("linear", None, 16, 32)])
def test_committed_table_matches_an_independent_recomputation(rule: str, beta: float | None, r: int, n: int) -> None:
    df = pd.read_csv(TABLE)
    sel = (df["rule"] == rule) & (df["r"] == r) & (df["n_pairs"] == n)
    sel &= df["beta"].isna() if beta is None else np.isclose(df["beta"], beta)
    assert sel.sum() == 1
    assert abs(df.loc[sel, "accuracy"].item() - _independent(rule, beta, r, n)) <= 0.05


def test_same_draws_across_rules_and_seeded_grid_reproduces() -> None:
    a, _ = run(Grid(ranks=(8,), n_pairs=(1, 4), trials=MIN_TRIALS, seed=5))
    b, _ = run(Grid(ranks=(8,), n_pairs=(1, 4), trials=MIN_TRIALS, seed=5))
    pd.testing.assert_frame_equal(a, b)
    assert math.isclose(a.loc[a["n_pairs"] == 4, "chance"].iloc[0], 0.25)


def test_bad_input_names_the_field() -> None:
    k = unit_vectors(torch.Generator().manual_seed(0), 2, 2, 4)
    with pytest.raises(ValueError, match="rule must be one of"):
        reads("delta_mem", 0.5, k, k)
    with pytest.raises(ValueError, match="beta for rule 'delta'"):
        reads("delta", None, k, k)
    with pytest.raises(ValueError, match="trials must be >= 200"):
        run(Grid(trials=10))
