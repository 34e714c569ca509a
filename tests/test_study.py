"""The study generator: intervals, the KV-bytes prediction and slopes, the tidy frame, and the site
(every section present; missing parts say "not run yet" with their command; the miniature of every
part, experiment=study_smoke, runs on the tiny model and renders with every figure and its CSV)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from harness.reporting import tidy
from harness.reporting.runs import load_runs
from harness.study import mechanism
from harness.study.intervals import cluster_bootstrap, mean_interval, wilson
from harness.study.scaling import KVLayout, layout_from_config, loglog_slope, model_layout
from harness.study.sections import COMMANDS
from harness.study.site import build_study
from tests._harness_cli import run_cli
from tests.test_report import grid_rows, write_run

SECTIONS = ["mechanism", "capacity", "cost", "agent", "precision", "limitations"]
FACTS = ["n", "interval", "device", "date", "command"]


def test_wilson_matches_known_values() -> None:
    lo, hi = wilson(0, 10)
    assert lo == 0 and math.isclose(hi, 0.2775, abs_tol=1e-4)
    lo, hi = wilson(5, 10)
    assert math.isclose(lo, 0.2366, abs_tol=1e-4) and math.isclose(hi, 0.7634, abs_tol=1e-4)


def test_interval_fits_the_data_and_says_which() -> None:
    assert mean_interval([1, 0, 1, 1])["ci_method"] == "wilson"
    shared = mean_interval([1, 1, 0, 0, 1, 1], ["a", "a", "b", "b", "c", "c"])
    assert shared["ci_method"] == "wilson_clustered" and shared["n_contexts"] == 3  # as the run's summary.json has it
    f1 = mean_interval([0.25, 0.25, 0.25, 0.25], ["a", "a", "b", "b"])  # two episodes alike: no spread to resample
    assert f1["ci_method"] == "wilson_clustered" and (f1["ci_low"], f1["ci_high"]) == wilson(0.5, 2) and f1["half_width"] > 0.2
    one = mean_interval([1.0])
    assert one["mean"] == 1.0 and one["ci_low"] is None and one["ci_reason"] == "n=1: a single sample gives no interval"
    # whole contexts agree inside: resampling contexts gives a wider interval than 60 independent samples would
    scores = [float(i % 2) for i in range(6) for _ in range(10)]
    lo, hi = cluster_bootstrap(scores, [i for i in range(6) for _ in range(10)])
    wlo, whi = wilson(sum(scores), len(scores))
    assert hi - lo > whi - wlo


def test_full_kv_bytes_follow_the_sliding_window_layout() -> None:
    gemma_like = KVLayout(("sliding_attention",) * 5 + ("full_attention",), 512, 1, 256, "test")
    per_token = 2 * 1 * 256 * 4  # K and V, one head of 256, fp32
    assert gemma_like.bytes(256, 4) == 6 * 256 * per_token  # below the window every layer keeps every token
    # sliding layers capped at window - 1 (what transformers' DynamicSlidingWindowLayer keeps), the global one linear
    assert gemma_like.bytes(4096, 4) == (5 * 511 + 4096) * per_token
    assert gemma_like.bytes(511, 4) == gemma_like.bytes(512, 4) - per_token  # from 511 on, only the global layer grows
    tiny, why = model_layout({"source": "tiny_random", "family": "gemma3"})
    assert why is None and tiny.sliding_window == 32 and tiny.layer_types.count("full_attention") == 2
    none, why = model_layout({"source": "no_such_source", "cache_dir": "/nonexistent"})
    assert none is None and "config not found" in why
    mistral, _ = layout_from_config({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "sliding_window": 8}, "t")
    assert mistral.layer_types == ("sliding_attention",) * 2 and mistral.bytes(100, 2) == 2 * 7 * 2 * 4 * 16 * 2
    qwen, _ = layout_from_config({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
                                  "sliding_window": 8, "use_sliding_window": False}, "t")
    assert qwen.sliding_window is None and qwen.bytes(100, 4) == 2 * 100 * 2 * 2 * 16 * 4
    hybrid, why = layout_from_config({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                                      "layer_types": ["linear_attention", "full_attention"]}, "cfg.json")
    assert hybrid is None and "cfg.json" in why and "linear_attention" in why


def test_loglog_slopes() -> None:
    xs = [512, 1024, 2048, 4096]
    assert math.isclose(loglog_slope(xs, [3 * x for x in xs])[0], 1.0, abs_tol=1e-9)
    assert math.isclose(loglog_slope(xs, [7.0] * 4)[0], 0.0, abs_tol=1e-9)
    slope, why = loglog_slope([512], [1.0])
    assert slope is None and "fewer than 2" in why


def test_tidy_frame_has_a_row_per_sample_and_keeps_failed_runs(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "full_kv", "needle", "m", grid_rows(lambda n, d: 1.0, lambda n: 100 * n))
    write_run(tmp_path / "b", "window", "needle", "m", [], status="failed",
              error={"type": "RuntimeError", "message": "boom", "traceback": ""})
    df = tidy.frame(load_runs([tmp_path]))
    assert len(df) == 6 + 1
    assert set(df.loc[df["method"] == "window", "status"]) == {"failed"}
    ok = df[df["status"] == "ok"]
    assert (ok["state_bytes"] == 100 * ok["context_length"]).all()
    assert ok["required_bytes"].isna().all() and ok["required_bytes_reason"].str.contains("memory card").all()
    assert (ok["variant"] == "full_kv").all() and (ok["context_id"] == ok["sample_id"]).all()


def _mechanism(folder: Path) -> None:
    assert mechanism.main(["--out", str(folder), "--trials", "200", "--ranks", "8", "--max-pairs", "4"]) == 0


def test_missing_parts_say_not_run_yet_with_their_command(tmp_path: Path) -> None:
    _mechanism(tmp_path / "mech")
    study = build_study([], tmp_path / "site", tmp_path / "mech")
    assert [s.id for s in study.sections] == SECTIONS
    html, md = (tmp_path / "site" / "index.html").read_text(), (tmp_path / "site" / "index.md").read_text()
    for part in ("capacity", "cost", "agent", "precision"):
        assert COMMANDS[part].split("#")[0].strip() in html and f"not run yet: {COMMANDS[part].split()[0]}" in md
    assert "memory.required_bytes" in html  # precision names what it needs
    assert (tmp_path / "site" / "figures" / "mechanism" / "mechanism_deltamem.csv").is_file()


def _figures(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_study_smoke_runs_every_part_and_renders(tmp_path: Path) -> None:
    res = run_cli(["experiment=study_smoke", "launcher=inline", f"out_dir={tmp_path / 'runs'}", "run.progress=false"], tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    _mechanism(tmp_path / "site")
    study = build_study([tmp_path / "runs"], tmp_path / "site")
    site = tmp_path / "site"
    ran = {s.id: s for s in study.sections if s.ran}
    assert set(ran) == {"mechanism", "capacity", "cost", "agent", "precision", "limitations"}
    html = (site / "index.html").read_text()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html
    for s in ran.values():
        assert set(FACTS) <= {k for k, _ in s.facts}, s.id
        for f in s.figures:
            for path in (f.svg, f.png, f.csv):
                assert (site / path).is_file(), path
            assert f.svg in html
    assert len(_figures(html)) == sum(len(s.figures) for s in ran.values()) >= 9
    cost = pd.read_csv(site / "cost_scaling.csv")
    assert {"method", "context_tokens", "state_bytes", "required_bytes", "ttft_cold_s", "decode_tok_per_s"} <= set(cost.columns)
    assert set(cost["method"]) == {"full_kv", "window", "deltamem_state"}
    assert cost["predicted_state_bytes"].notna().tolist() == (cost["method"] == "full_kv").tolist()
    full = cost[cost["method"] == "full_kv"]  # the tiny model's layout is known in code: the prediction is exact
    assert (full["state_bytes"] == full["predicted_state_bytes"]).all() and (full["state_vs_predicted"] == 1).all()
    assert cost.loc[cost["method"] != "full_kv", "predicted_state_bytes_reason"].str.contains("covers full_kv").all()
    assert "max deviation 0.0% over 2 context lengths (within 10%)" in html
    curve = pd.read_csv(site / "figures" / "cost" / "cost_state_bytes.csv")
    assert (curve["variant"] == "predicted full KV").sum() > 2
    tidy_rows = pd.read_csv(site / "tidy_samples.csv")
    assert set(tidy_rows["part"]) == {"capacity", "cost", "agent", "precision"} and tidy_rows["run_id"].nunique() == 15
    prec = pd.read_csv(site / "precision.csv")  # a point per method at the smoke's bfloat16, its bytes from the card
    assert set(prec["precision"]) == {"bfloat16"} and set(prec["method"]) == {"full_kv", "window", "deltamem"}
    assert (prec["required_bytes"] > prec["weights_bytes"]).all() and (prec["n"] == 2).all()
    times = next(tb for tb in ran["limitations"].tables if tb.title.startswith("Measured time per part"))
    assert [r[0] for r in times.rows][-1] == "all parts" and "within the 4 h CPU budget" in times.rows[-1][2]
    assert all(r[2] != "not measured" for r in times.rows[1:5])  # every language-model part's runs carry wall_s
    # every number in a finding travels with its n
    for s in (ran["capacity"], ran["agent"]):
        assert s.finding and all("n = " in f or "n/a" in f for f in s.finding)


def test_capacity_numbers_are_the_runs_numbers(tmp_path: Path) -> None:
    """Known scores in, the same means (clustered by context) out: table, CSV and finding agree."""
    from tests.test_report import _row

    def rows(score_of) -> list[dict]:
        out = []
        for n in (2, 8):
            for e in range(3):  # 3 contexts per N, 2 queries each
                for q in range(2):
                    r = _row(0, {"num_facts": n, "context_length": 512}, score_of(n, e, q), 1000 * n, 4, None, "x")
                    out.append(r | {"id": f"kv_recall-{n}-{e}-{q}"})
        return out

    write_run(tmp_path / "runs" / "a", "full_kv", "kv_recall", "m", rows(lambda n, e, q: 1.0))
    write_run(tmp_path / "runs" / "b", "window", "kv_recall", "m", rows(lambda n, e, q: float(n == 2 and e > 0)))
    _mechanism(tmp_path / "site")
    study = build_study([tmp_path / "runs"], tmp_path / "site")
    cap = pd.read_csv(tmp_path / "site" / "capacity.csv").set_index(["variant", "num_facts"])
    assert cap.loc[("full_kv", 8), "accuracy"] == 1.0 and cap.loc[("window", 8), "accuracy"] == 0.0
    assert math.isclose(cap.loc[("window", 2), "accuracy"], 4 / 6)
    assert (cap["n"] == 6).all() and (cap["n_contexts"] == 3).all() and set(cap["ci_method"]) == {"wilson_clustered"}
    (finding,) = next(s for s in study.sections if s.id == "capacity").finding
    assert finding.startswith("At N = 8 facts, the most accurate method is full_kv (1.00") and "n = 6 (3 contexts)" in finding
    md = (tmp_path / "site" / "index.md").read_text()
    assert "0.67 \\[" in md  # window at N = 2, with its interval, in the Markdown table


def test_cost_section_checks_full_kv_against_the_config_prediction(tmp_path: Path) -> None:
    """Known bytes in: full KV off the prediction by 0 %, 2 % and 5 % (3 lengths), δ-mem constant. The table
    shows the ratio per length, the finding the largest deviation against the 10 % tolerance, and δ-mem slope 0."""
    from tests.test_report import _row

    layout, _ = model_layout({"source": "tiny_random", "family": "gemma3"})
    lengths, off = (16, 64, 256), {16: 1.0, 64: 1.02, 256: 1.05}

    def rows(state_of) -> list[dict]:
        return [_row(i, {"context_length": n, "depth": 50}, 1.0, state_of(n), 4, None, "x") | {"id": f"passkey-{n}"}
                for i, n in enumerate(lengths)]

    for name, state_of in (("full_kv", lambda n: round(layout.bytes(n, 4) * off[n])), ("deltamem", lambda n: 4096)):
        run = write_run(tmp_path / "runs" / name, name, "passkey", "tiny", rows(state_of))
        if name == "deltamem":  # the method settings the harness records (summary.json method_config)
            summary = json.loads((run / "summary.json").read_text())
            (run / "summary.json").write_text(json.dumps(summary | {"method_config": {"window": 256, "rank": 8}}))
        variant = "deltamem_state" if name == "deltamem" else name
        (run / "config.yaml").write_text(f"method:\n  name: {name}\ntask:\n  name: passkey\nstudy:\n  variant: {variant}\n"
                                         "model:\n  name: tiny\n  source: tiny_random\n  family: gemma3\n")
    _mechanism(tmp_path / "site")
    study = build_study([tmp_path / "runs"], tmp_path / "site")
    cost = next(s for s in study.sections if s.id == "cost")
    pred = pd.read_csv(tmp_path / "site" / "cost_full_kv_predicted.csv")
    assert pred["context_tokens"].tolist() == list(lengths)
    assert [round(r, 4) for r in pred["state_vs_predicted"]] == [1.0, 1.02, 1.05]
    assert pred["predicted_state_bytes"].tolist() == [layout.bytes(n, 4) for n in lengths]
    table = next(t for t in cost.tables if t.csv == "cost_full_kv_predicted.csv")
    assert "max deviation 5.0% over 3 context lengths (within 10%)" in table.title
    assert [r[-1] for r in table.rows] == ["1.0000", "1.0200", "1.0500"]
    assert "max deviation 5.0%" in cost.finding[0] and "deltamem_state 0.00 (4.0 KiB at every length, 3 context lengths)" in cost.finding[1]
    assert any("sliding-window layers (window 32: they keep the last 31 positions)" in n for n in cost.notes)
    assert "deltamem_state: state_bytes = the r × r states + the backbone's KV window (method.window = 256 tokens" in " ".join(cost.notes)
    html = (tmp_path / "site" / "index.html").read_text()
    assert "measured / predicted" in html and "max deviation 5.0% over 3 context lengths" in html


def test_sections_state_the_command_the_sweep_really_ran(tmp_path):
    import pandas as pd

    from harness.study.sections import as_run

    sweep = tmp_path / "sweeps" / "study_cost_1"
    (sweep / "run_a").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - experiment=study_cost\n    - run.repetitions=1\n    - out_dir=/secret/place\n    - run.progress=false\n")
    df = pd.DataFrame({"run_path": [str(sweep / "run_a"), str(sweep / "run_a"), str(tmp_path / "lonely")]})
    assert as_run(df) == ["python -m harness experiment=study_cost run.repetitions=1"]  # once, no local path


def _kv_rows(counts: dict[int, tuple[int, int]], state: int) -> list[dict]:
    """kv_recall rows, one question per context: {N: (contexts, correct)}."""
    from tests.test_report import _row

    return [_row(0, {"num_facts": n, "context_length": 512}, float(e < hits), state, 4, None, "x") | {"id": f"kv_recall-{n}-{e}-0"}
            for n, (k, hits) in counts.items() for e in range(k)]


def _labelled(run: Path, variant: str, part: str | None = None) -> None:
    text = (run / "config.yaml").read_text() + f"study:\n  variant: {variant}\n" + (f"  part: {part}\n" if part else "")
    (run / "config.yaml").write_text(text)


def test_headline_cell_compares_the_state_with_the_window_of_the_same_bytes(tmp_path: Path) -> None:
    """The N with the most samples is the headline: δ-mem r32 40/100 vs window 10/100 (Wilson intervals apart)."""
    for name, method, n8, state in (("w", "window", 10, 9 * 2**20), ("d", "deltamem", 40, 9 * 2**20 + 73728), ("f", "full_kv", 100, 20 * 2**20)):
        run = write_run(tmp_path / "runs" / name, method, "kv_recall", "m", _kv_rows({2: (5, 5), 8: (10, n8 // 10)}, state))
        _labelled(run, {"deltamem": "deltamem_state_r32"}.get(method, method))
        # the headline run: 90 more contexts at N = 8 under seed 1, whose context ids repeat the grid's
        more = write_run(tmp_path / "runs" / f"{name}_head", method, "kv_recall", "m", _kv_rows({8: (90, n8 - n8 // 10)}, state))
        summary = json.loads((more / "summary.json").read_text())
        (more / "summary.json").write_text(json.dumps(summary | {"seed": 1}))
        _labelled(more, {"deltamem": "deltamem_state_r32"}.get(method, method))
    _mechanism(tmp_path / "site")
    cap = next(s for s in build_study([tmp_path / "runs"], tmp_path / "site").sections if s.id == "capacity")
    head = cap.finding[0]
    assert head.startswith("The headline cell, N = 8 facts: deltamem_state_r32 scores 0.40 [") and "n = 100 against" in head
    assert "contexts)" not in head  # 100 distinct contexts (seed 0 and seed 1), one question each: plain Wilson
    assert "against the window of the same KV bytes at 0.10 [" in head and "full KV scores 1.00 [" in head
    assert "rag_bm25" not in head and "BM25 retrieval n/a (not run)" in head
    assert "+0.30, the 95% intervals do not overlap" in head
    assert "state 9.07 MiB vs 9.00 MiB" in head
    assert cap.finding[1].startswith("At N = 8 facts, the most accurate method is full_kv")


def _card_run(folder: Path, method: str, dtype: str, quant: str, scores: list[float], required: int, weights: int) -> Path:
    from tests.test_report import _row

    rows = [_row(i, {"context_length": 512, "depth": 50}, s, 1000, 4, None, "x") | {"id": f"passkey-{i}"} for i, s in enumerate(scores)]
    run = write_run(folder, method, "passkey", "m", rows)
    summary = json.loads((run / "summary.json").read_text())
    summary["memory"] = {"required_bytes": required, "required_phase": "load", "weights_bytes": weights, "runtime_bytes": 1,
                         "method_param_bytes": 0, "state_bytes": 1000, "working_bytes": 0, "unaccounted_bytes": 0}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "config.yaml").write_text(f"method:\n  name: {method}\ntask:\n  name: passkey\nmodel:\n  name: m\n  dtype: {dtype}\n"
                                     f"  quantization: {quant}\n")
    return run


def test_a_folder_assigned_on_the_command_line_renders_as_the_precision_part(tmp_path: Path) -> None:
    """Runs without study.part (experiment=precision) land in part 5 when their folder is assigned:
    fp32 10/10, bf16 10/10, bf16 + int8 weights 0/10 (intervals apart) -> 1 of 2 cells differ."""
    from harness.study.__main__ import main

    sweep = tmp_path / "runs" / "precision_1"
    _card_run(sweep / "a", "full_kv", "float32", "none", [1.0] * 10, 900 * 2**20, 600 * 2**20)
    _card_run(sweep / "b", "full_kv", "bfloat16", "none", [1.0] * 10, 800 * 2**20, 300 * 2**20)
    _card_run(sweep / "c", "full_kv", "bfloat16", "int8", [0.0] * 10, 700 * 2**20, 250 * 2**20)
    _mechanism(tmp_path / "site")
    assert main([f"precision={sweep}", "--out", str(tmp_path / "site")]) == 0
    prec = pd.read_csv(tmp_path / "site" / "precision.csv").set_index("precision")
    assert set(prec.index) == {"float32", "bfloat16", "bfloat16 · weights int8"}
    assert prec.loc["bfloat16 · weights int8", "required_bytes"] == 700 * 2**20 and prec.loc["float32", "weights_bytes"] == 600 * 2**20
    md = (tmp_path / "site" / "index.md").read_text()
    assert "required bytes run from 700.00 MiB (full_kv, bfloat16 · weights int8) to 900.00 MiB (full_kv, float32)" in md
    assert "1 of 2 cells differ in accuracy from the same method and task at float32" in md
    assert "figures/precision/passkey/required_vs_accuracy.svg" in (tmp_path / "site" / "index.html").read_text()
    tidy_rows = pd.read_csv(tmp_path / "site" / "tidy_samples.csv")
    assert set(tidy_rows["part"]) == {"precision"}  # not "cost", which passkey runs without a part would join
    assert "python -m harness.study precision=precision_1 --out site" in md  # the render as run, no local path
    assert main([f"precison={sweep}", "--out", str(tmp_path / "site")]) == 2  # a misspelt part is refused
