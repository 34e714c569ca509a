"""Accuracy intervals: Wilson for 0/1 scores (known values), a seeded bootstrap for continuous
scores, wider intervals when samples share a context, and no interval below two samples."""

from __future__ import annotations

import math

import pytest

from harness.stats import accuracy_interval, bootstrap_ci, cluster_bootstrap_ci, effective_n, wilson
from harness.summary import console_table, render_md, summarize


def test_wilson_known_values() -> None:
    lo, hi = wilson(1.0, 15)
    assert lo == pytest.approx(0.7961, abs=1e-4) and hi == 1.0  # 15/15 is not a certainty
    lo, hi = wilson(0.0, 15)
    assert lo == 0.0 and hi == pytest.approx(0.2039, abs=1e-4)
    lo, hi = wilson(0.5, 100)  # textbook value: 0.5 +- ~0.0971 (centre stays at 0.5)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    with pytest.raises(ValueError, match="n must be positive"):
        wilson(0.5, 0)


@pytest.mark.parametrize("n", [2, 3, 15, 200])
@pytest.mark.parametrize("frac", [0.0, 0.5, 1.0])
def test_wilson_never_has_zero_width_and_contains_the_mean(n: int, frac: float) -> None:
    p = round(frac * n) / n
    lo, hi = wilson(p, n)
    assert 0.0 <= lo <= p <= hi <= 1.0 and hi - lo > 0


def test_binary_scores_get_wilson_not_a_degenerate_bootstrap() -> None:
    acc = accuracy_interval([1.0] * 15)
    assert acc["ci_method"] == "wilson" and acc["n"] == 15 and acc["mean"] == 1.0
    assert acc["ci95"][0] == pytest.approx(0.796, abs=1e-3) and acc["ci95"][1] == 1.0
    none = accuracy_interval([0.0] * 15)
    assert none["ci95"][0] == 0.0 and none["ci95"][1] > 0.15


def test_fewer_than_two_samples_give_no_interval_with_a_reason() -> None:
    one = accuracy_interval([1.0])
    assert one["ci95"] is None and one["ci_method"] == "none" and one["ci95_reason"].startswith("n=1")
    empty = accuracy_interval([])
    assert empty["mean"] is None and empty["ci95"] is None and empty["ci95_reason"] == "no scored samples"
    shared = accuracy_interval([1.0, 0.0, 1.0], ["c", "c", "c"])  # one context: nothing to resample over
    assert shared["ci95"] is None and "one context" in shared["ci95_reason"]


def test_continuous_scores_get_a_seeded_bootstrap() -> None:
    f1 = [0.2, 0.5, 0.9, 1.0, 0.0, 0.75, 0.4, 0.6]
    acc = accuracy_interval(f1)
    assert acc["ci_method"] == "bootstrap"
    lo, hi = acc["ci95"]
    assert lo < sum(f1) / len(f1) < hi
    assert accuracy_interval(f1) == acc  # same data, same interval (seed 0)
    assert bootstrap_ci(f1, seed=3) == bootstrap_ci(f1, seed=3)
    assert bootstrap_ci(f1, seed=3) != bootstrap_ci(f1, seed=4)  # the seed is what fixes it
    assert cluster_bootstrap_ci(f1, [0, 0, 1, 1, 2, 2, 3, 3], seed=5) == cluster_bootstrap_ci(f1, [0, 0, 1, 1, 2, 2, 3, 3], seed=5)
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_ci([0.5])


def _perfectly_correlated(k: int, m: int, right: float = 1.0, wrong: float = 0.0) -> tuple[list[float], list[str]]:
    """k contexts of m questions each; every question of a context is answered alike."""
    scores = [right if c % 2 == 0 else wrong for c in range(k) for _ in range(m)]
    return scores, [f"ctx{c}" for c in range(k) for _ in range(m)]


def _width(acc: dict) -> float:
    return acc["ci95"][1] - acc["ci95"][0]


def test_shared_contexts_widen_the_binary_interval() -> None:
    scores, ctx = _perfectly_correlated(10, 4)
    naive, clustered = accuracy_interval(scores), accuracy_interval(scores, ctx)
    assert naive["ci_method"] == "wilson" and clustered["ci_method"] == "wilson_clustered"
    assert clustered["n"] == 40 and clustered["n_contexts"] == 10
    # fully correlated answers carry as much as one answer per context (9 = k - 1 after the small-k correction)
    assert clustered["n_eff"] == pytest.approx(9.0)
    assert _width(clustered) > 1.5 * _width(naive)


def test_independent_answers_in_shared_contexts_cost_little() -> None:
    # answers alternate within every context: no correlation, so the design effect is clipped at 1
    scores = [float(i % 2) for i in range(40)]
    ctx = [f"ctx{i // 4}" for i in range(40)]
    acc = accuracy_interval(scores, ctx)
    assert acc["n_eff"] == pytest.approx(40.0) and acc["ci95"] == pytest.approx(list(wilson(0.5, 40)))


def test_all_equal_clustered_scores_count_contexts() -> None:
    acc = accuracy_interval([1.0] * 12, [f"e{i // 4}" for i in range(12)])
    assert acc["n_eff"] == 3.0 and effective_n([1.0] * 12, [f"e{i // 4}" for i in range(12)]) == 3.0
    assert acc["ci95"] == pytest.approx(list(wilson(1.0, 3)))  # lower bound ~0.44, not 0.76 (n=12)


def test_a_bootstrap_with_no_spread_never_gives_a_zero_width_interval() -> None:
    """Two episodes at F1 0.25 each: every resample has mean 0.25. Scores in [0, 1] then take Wilson
    on the number of contexts; unbounded scores keep the bootstrap (no bound to lean on)."""
    acc = accuracy_interval([0.25, 0.25, 0.25, 0.25], ["a", "a", "b", "b"])
    assert acc["ci_method"] == "wilson_clustered" and acc["n_eff"] == 2.0
    assert acc["ci95"] == pytest.approx(list(wilson(0.25, 2))) and acc["ci95"][1] - acc["ci95"][0] > 0.5
    alone = accuracy_interval([0.5, 0.5, 0.5])
    assert alone["ci_method"] == "wilson" and alone["ci95"] == pytest.approx(list(wilson(0.5, 3)))
    spread = accuracy_interval([0.2, 0.4, 0.3, 0.1], ["a", "a", "b", "b"])
    assert spread["ci_method"] == "cluster_bootstrap"  # resamples differ: the bootstrap stands


def test_shared_contexts_widen_the_continuous_interval() -> None:
    scores, ctx = _perfectly_correlated(10, 4, right=0.8, wrong=0.3)
    naive, clustered = accuracy_interval(scores), accuracy_interval(scores, ctx)
    assert naive["ci_method"] == "bootstrap" and clustered["ci_method"] == "cluster_bootstrap"
    assert _width(clustered) > 1.5 * _width(naive)
    assert clustered["ci95"][0] < 0.55 < clustered["ci95"][1]


def _row(i: int, score: float, ctx: str | None, facts: int) -> dict:
    row = {"id": f"s{i}", "rep": 0, "num_facts": facts, "slices": {"num_facts": facts}, "score": score}
    if ctx is not None:
        row["context_id"] = ctx
    return row


def test_summary_records_the_method_per_entry_and_prints_no_ci_for_one_sample() -> None:
    rows = [_row(i, float(i % 3 != 0), f"ep{i // 4}", 4 if i < 8 else 16) for i in range(12)] + [_row(12, 1.0, "ep9", 32)]
    s = summarize(rows)
    assert s["accuracy"]["ci_method"] == "wilson_clustered" and s["accuracy"]["n_contexts"] == 4
    by = s["slices"]["num_facts"]
    assert by["4"]["ci_method"] == "wilson_clustered" and by["4"]["n_contexts"] == 2
    assert by["32"]["ci95"] is None and by["32"]["ci_method"] == "none" and by["32"]["ci95_reason"]
    s.update(method="m", task="t", model="x", status="ok")
    assert "n=13 in 4 contexts, clustered Wilson 95% CI" in console_table(s)
    assert "1.000 (n=1, no CI)" in render_md(s)
    # rows without context_id (older runs): every sample its own context
    old = summarize([_row(i, 1.0, None, 4) for i in range(15)])
    assert old["accuracy"]["ci_method"] == "wilson" and old["accuracy"]["ci95"][0] == pytest.approx(0.796, abs=1e-3)
    assert "1.000 [0.796, 1.000] (n=15, Wilson 95% CI)" in console_table({**old, "method": "m", "task": "t", "model": "x"})


def test_one_interval_kind_per_run() -> None:
    # an F1 run whose first slice happens to be all 0/1 still uses the bootstrap there
    rows = [_row(0, 1.0, None, 4), _row(1, 0.0, None, 4), _row(2, 0.5, None, 16), _row(3, 0.25, None, 16)]
    s = summarize(rows)
    assert {g["ci_method"] for g in s["slices"]["num_facts"].values()} == {"bootstrap"}
    assert not any(isinstance(v, float) and math.isnan(v) for v in s["accuracy"]["ci95"])
