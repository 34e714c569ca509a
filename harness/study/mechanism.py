"""Mechanism capacity without a language model: how many key–value pairs an r×r state returns.

Protocol (the study's part 1): keys and values are drawn i.i.d. uniform on the unit sphere in R^r;
N pairs are written in order with a fixed β; reading with key i is correct when the read has its
highest cosine similarity with v_i among the N written values. Accuracy is the mean over all pairs
of a trial and over ``trials`` trials; its 95 % interval is a bootstrap over trials, Wilson where trials are 0/1 or all alike (the pairs of
one trial share a state, so they are not independent samples).

Rules, all starting from S = 0 ([r, r], row i = value dim i):
- ``deltamem``: δ-mem's own update, S ← (1 − β) S + β (v − S k) kᵀ, run through
  ``kernels.deltamem.scan``. δ-mem normally forms its keys as L2norm(tanh(W_k x)); here the sampled
  unit keys and values are fed to the recurrence directly, so only the update rule is measured.
- ``delta``: the plain delta rule without decay, S ← S + β (v − S k) kᵀ.
- ``linear``: linear attention, S ← S + v kᵀ (β is not used and recorded as null).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import pandas as pd
import torch

from harness.stats import accuracy_interval

RULES = ("linear", "delta", "deltamem")
#: (rule, β) settings of the study; linear attention has no β
SETTINGS: tuple[tuple[str, float | None], ...] = (
    ("deltamem", 0.1), ("deltamem", 0.5), ("delta", 0.5), ("delta", 1.0), ("linear", None))
RANKS = (8, 16, 32, 64)
N_PAIRS = tuple(2**i for i in range(8))  # 1 … 128
MIN_TRIALS = 200


@dataclass(frozen=True)
class Grid:
    settings: tuple[tuple[str, float | None], ...] = SETTINGS
    ranks: tuple[int, ...] = RANKS
    n_pairs: tuple[int, ...] = N_PAIRS
    trials: int = 256
    seed: int = 0


def unit_vectors(gen: torch.Generator, trials: int, n: int, r: int) -> torch.Tensor:
    """[trials, n, r] fp32 i.i.d. uniform on the unit sphere (normalised Gaussians)."""
    x = torch.randn(trials, n, r, generator=gen, dtype=torch.float64)
    return (x / x.norm(dim=-1, keepdim=True)).float()


def _check(rule: str, beta: float | None) -> None:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if rule != "linear" and (beta is None or not 0 < beta <= 1):
        raise ValueError(f"beta for rule {rule!r} must be in (0, 1], got {beta!r}")
    if rule == "deltamem" and beta == 1:
        raise ValueError("beta for rule 'deltamem' must be below 1 (λ = 1 − β would erase the state)")


def reads(rule: str, beta: float | None, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Write every pair in order, then read with every key: [trials, N, r] keys/values -> reads [trials, N, r]."""
    _check(rule, beta)
    T, N, r = keys.shape
    if rule == "linear":
        S = torch.einsum("tni,tnj->tij", values, keys)  # Σ v kᵀ, [trials, r, r]
        return torch.einsum("tij,tnj->tni", S, keys)
    if rule == "delta":
        S = keys.new_zeros(T, r, r)
        for n in range(N):
            k, v = keys[:, n], values[:, n]  # [trials, r]
            err = v - torch.einsum("tij,tj->ti", S, k)
            S = S + beta * err[:, :, None] * k[:, None, :]
        return torch.einsum("tij,tnj->tni", S, keys)
    from kernels.deltamem import scan

    # One sequence of 2N tokens per trial, one state head: N writes (β), then N reads with β = 0,
    # which leaves the state exactly as it is (λ = 1, no write), so read n + N is S_N k_n.
    q = torch.cat([keys, keys], dim=1)[:, :, None]  # [trials, 2N, 1, r]
    k = q.clone()
    v = torch.cat([values, torch.zeros_like(values)], dim=1)[:, :, None]
    b = torch.cat([torch.full_like(values, float(beta)), torch.zeros_like(values)], dim=1)[:, :, None]
    out, _ = scan(q, k, v, b)
    return out[:, N:, 0]


def correct(read: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """[trials, N] bool: the read of pair n is closest (cosine) to v_n among the N written values."""
    cos = torch.einsum("tni,tmi->tnm", read, values) / read.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return cos.argmax(dim=-1) == torch.arange(values.shape[1])


def _cell(rule: str, beta: float | None, r: int, n: int, hits: torch.Tensor) -> dict:
    per_trial = hits.double().mean(dim=1).numpy()  # [trials]
    # bootstrap over trials; Wilson over trials where they are 0/1 (N = 1) or all alike (no spread to resample)
    lo, hi = accuracy_interval(per_trial.tolist())["ci95"]
    return {"rule": rule, "beta": beta, "r": r, "n_pairs": n, "accuracy": float(per_trial.mean()),
            "ci_low": lo, "ci_high": hi, "trials": int(hits.shape[0]), "chance": 1.0 / n}


def run(grid: Grid = Grid()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(capacity table: one row per rule × β × r × N; age table: δ-mem's accuracy per pair age).

    Every rule sees the same keys and values for a given (r, N), so differences between rules are
    not sampling noise. age = pairs written after this one (0 = the newest, N − 1 = the oldest).
    """
    if grid.trials < MIN_TRIALS:
        raise ValueError(f"trials must be >= {MIN_TRIALS} (the protocol's minimum), got {grid.trials}")
    cells, ages = [], []
    for r in grid.ranks:
        for n in grid.n_pairs:
            gen = torch.Generator().manual_seed(grid.seed * 1_000_003 + r * 1009 + n)
            keys, values = unit_vectors(gen, grid.trials, n, r), unit_vectors(gen, grid.trials, n, r)
            for rule, beta in grid.settings:
                hits = correct(reads(rule, beta, keys, values), values)
                cells.append(_cell(rule, beta, r, n, hits))
                if rule == "deltamem":
                    acc = hits.double().mean(dim=0).numpy()  # [N], by write position
                    ages += [{"rule": rule, "beta": beta, "r": r, "n_pairs": n, "age": n - 1 - i,
                              "accuracy": float(a), "trials": grid.trials} for i, a in enumerate(acc)]
    return pd.DataFrame(cells), pd.DataFrame(ages).sort_values(["beta", "r", "n_pairs", "age"], ignore_index=True)


def capacity_at(df: pd.DataFrame, threshold: float = 0.9) -> pd.DataFrame:
    """Largest N with accuracy ≥ threshold per rule × β × r (null when even N = 1 misses it)."""
    rows = []
    for (rule, beta, r), g in df.groupby(["rule", "beta", "r"], dropna=False, sort=True):
        ok = g.loc[g["accuracy"] >= threshold, "n_pairs"]
        rows.append({"rule": rule, "beta": None if isinstance(beta, float) and math.isnan(beta) else beta, "r": r,
                     "threshold": threshold, "max_n_pairs": int(ok.max()) if len(ok) else None})
    return pd.DataFrame(rows)


def settings_label(rule: str, beta: float | None) -> str:
    return rule if beta is None or (isinstance(beta, float) and math.isnan(beta)) else f"{rule} β={beta:g}"


def iter_settings(df: pd.DataFrame) -> Iterable[tuple[str, float | None, pd.DataFrame]]:
    for (rule, beta), g in df.groupby(["rule", "beta"], dropna=False, sort=True):
        yield rule, (None if isinstance(beta, float) and math.isnan(beta) else beta), g


COMMAND = "python -m harness.study.mechanism --out docs/study"


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.study.mechanism --out docs/study``: compute the grid, write the CSVs and
    ``mechanism_meta.json`` (environment, trials, seed, wall time) atomically."""
    import argparse
    import time
    from pathlib import Path

    from harness import env, io

    p = argparse.ArgumentParser(prog="python -m harness.study.mechanism", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for mechanism_capacity.csv, mechanism_age.csv, mechanism_meta.json")
    p.add_argument("--trials", type=int, default=Grid.trials, help=f"trials per cell (>= {MIN_TRIALS})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ranks", type=int, nargs="+", default=list(RANKS))
    p.add_argument("--max-pairs", type=int, default=N_PAIRS[-1], help="largest N (powers of 2 from 1)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # shared CPU: one thread, results do not depend on it
    grid = Grid(ranks=tuple(a.ranks), n_pairs=tuple(n for n in N_PAIRS if n <= a.max_pairs) or (1,), trials=a.trials, seed=a.seed)
    t0 = time.perf_counter()
    cells, ages = run(grid)
    wall = time.perf_counter() - t0
    io.write_text(a.out / "mechanism_capacity.csv", cells.to_csv(index=False))
    io.write_text(a.out / "mechanism_age.csv", ages.to_csv(index=False))
    e = env.collect(seed=a.seed)
    argv_text = " ".join(["python -m harness.study.mechanism", *(argv if argv is not None else __import__("sys").argv[1:])])
    io.write_json(a.out / "mechanism_meta.json", {
        "command": argv_text, "trials": grid.trials, "seed": grid.seed, "ranks": list(grid.ranks),
        "n_pairs": list(grid.n_pairs), "settings": [[r, b] for r, b in grid.settings], "wall_s": wall,
        "interval": "95% percentile bootstrap over trials (2000 resamples, seed 0; a trial's pairs share one state), Wilson over "
                    "trials where each trial is 0/1 (N = 1) or every trial scored alike (never a zero-width interval)",
        "date": e.get("date"), "device": e.get("cpu"), "cpu_threads": e.get("cpu_threads"), "torch_threads": 1,
        "git_sha": e.get("git_sha"), "git_dirty": e.get("git_dirty"), "versions": e.get("versions")})
    print(f"mechanism: {len(cells)} cells × {grid.trials} trials in {wall:.1f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
