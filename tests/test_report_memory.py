"""The report's numbers come from the tidy frame, and the memory card reaches the pages: leaderboard
cells equal values computed by hand from known samples; the stacked bar's segments are the card's
fields; the Pareto front of a known set of points is exactly the expected one; the persist / restore
table carries the fixture's values; every figure's CSV has its named columns and one row per point."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from harness import io
from harness.reporting import build_report, cuts, tidy
from harness.reporting.fmt import fmt_value
from harness.reporting.runs import load_runs
from test_report import _row, grid_rows, site, write_run  # noqa: F401  (site: the report of this module's runs_dir)

MIB = 2**20
PARTS = ["runtime_bytes", "weights_bytes", "method_param_bytes", "state_bytes", "working_bytes", "unaccounted_bytes"]


def add_card(folder: Path, required_mib: float, dtype: str = "float32", quantization: str = "none", kv: str | None = None,
             persist: dict | None = None, model: str = "tiny") -> dict:
    """Give a fixture run a memory card (parts that add up to ``required_mib``) and a precision."""
    s = io.read_json(folder / "summary.json")
    required = int(required_mib * MIB)
    parts = {"runtime_bytes": required // 2, "weights_bytes": required // 4, "method_param_bytes": 4096, "state_bytes": 65536,
             "working_bytes": 3 * MIB}
    parts["unaccounted_bytes"] = required - sum(parts.values())
    card = {**parts, "required_bytes": required, "required_phase": "ingest", "device": "cpu"}
    card |= {f"{p}_source": ("tensors" if p in ("weights_bytes", "method_param_bytes", "state_bytes") else "rss") for p in parts}
    card["required_bytes_source"] = "rss"
    if persist:
        card["persist"] = persist
    s["memory"] = card
    if kv is not None:
        s["method_config"] = {"kv_quantization": kv}
    io.write_json(folder / "summary.json", s)
    io.write_text(folder / "config.yaml", f"method:\n  name: {s['method']}\ntask:\n  name: {s['task']}\n"
                                          f"model:\n  name: {model}\n  dtype: {dtype}\n  quantization: {quantization}\n")
    return card


PERSIST = {"persisted_bytes": 279605, "persisted_tensor_bytes": {"kv": 278528}, "save_s": 0.0017, "restore_s": 0.0011,
           "ingest_s": 0.058, "n": 6}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """Four method × precision points on needle: two on the Pareto front, two dominated."""
    runs = tmp_path_factory.mktemp("runs")
    write_run(runs / "a", "full_kv", "needle", "tiny", grid_rows(lambda n, d: 1.0, lambda n: n * 1024))
    add_card(runs / "a", 1000, kv="none")  # dominated by b: more bytes, same accuracy
    write_run(runs / "b", "full_kv", "needle", "tiny", grid_rows(lambda n, d: 1.0, lambda n: n * 512))
    add_card(runs / "b", 600, dtype="bfloat16", kv="none", persist=PERSIST)
    write_run(runs / "c", "full_kv", "needle", "tiny", grid_rows(lambda n, d: float(n == 256), lambda n: n * 256))
    add_card(runs / "c", 450, kv="int8")
    write_run(runs / "d", "window", "needle", "tiny", grid_rows(lambda n, d: 0.0, lambda n: 64 * 1024))
    add_card(runs / "d", 700, quantization="int8")  # dominated by c: more bytes, lower accuracy
    return runs


def _run_id(runs_dir: Path, folder: str) -> str:
    return next(r.id for r in load_runs([runs_dir]) if r.path.name == folder)


def test_pareto_front_of_known_points() -> None:
    # (bytes, accuracy): the 2nd is beaten by the 1st (fewer bytes, higher accuracy), the 4th by the 3rd
    assert cuts.pareto_front([1, 2, 3, 4], [0.5, 0.4, 0.9, 0.9]) == [True, False, True, False]
    assert cuts.pareto_front([5, 1], [0.0, 0.0]) == [False, True]


def test_required_vs_accuracy_marks_exactly_the_front(site: Path) -> None:
    pts = pd.read_csv(site / "figures/needle/required_vs_accuracy.csv", keep_default_na=False)
    assert list(pts.columns) == ["task", "model", "method", "dtype", "quantization", "kv_quantization", "precision", "label",
                                 "required_bytes", "accuracy", "n", "runs", "pareto"]
    assert len(pts) == 4  # one row per method × precision
    front = set(pts.loc[pts["pareto"], "label"])
    assert front == {"full_kv · bfloat16", "full_kv · float32 · KV int8"}
    by = pts.set_index("label")
    assert by.loc["full_kv · float32", "required_bytes"] == 1000 * MIB and by.loc["full_kv · float32", "accuracy"] == 1.0
    assert by.loc["full_kv · float32 · KV int8", "accuracy"] == 0.5 and by.loc["window · float32 · weights int8", "accuracy"] == 0.0
    svg = (site / "figures/needle/required_vs_accuracy.svg").read_text()
    for label in by.index:  # every point is labelled
        assert label.replace("·", "&#183;") in svg or label in svg, label
    assert '<img src="figures/needle/required_vs_accuracy.svg"' in (site / "index.html").read_text()


def test_stacked_bar_segments_are_the_card_fields(site: Path, runs_dir: Path) -> None:
    card = io.read_json(runs_dir / "b" / "summary.json")["memory"]
    bars = pd.read_csv(site / "figures/methods/full_kv/memory_card.csv")
    assert list(bars.columns) == ["run_id", "method", "model", "task", "phase", "part", "bytes", "source", "required_bytes"]
    mine = bars[bars["run_id"] == _run_id(runs_dir, "b")].set_index("part")
    assert list(mine.index) == PARTS
    assert {p: int(mine.loc[p, "bytes"]) for p in PARTS} == {p: card[p] for p in PARTS}
    assert mine["bytes"].sum() == card["required_bytes"] == mine["required_bytes"].iloc[0]  # the parts add up to the bar
    assert set(mine["phase"]) == {"ingest"} and mine.loc["weights_bytes", "source"] == "tensors"
    assert len(bars) == 3 * len(PARTS)  # the three full_kv runs, one row per segment
    svg = (site / "figures/methods/full_kv/memory_card.svg").read_text()
    for p in PARTS:
        assert f'id="part--{p}--' in svg
        assert fmt_value(card[p], "B") in svg  # labelled in MiB/GiB
    assert "memory_card.svg" in (site / "methods/full_kv.html").read_text()
    card_page = (site / "methods/full_kv.md").read_text()
    assert "| 4.00 MiB | 0.625 MiB |" in card_page  # weights_bytes of the load phase, then mean(256 KiB, 1 MiB) of state


def test_persist_table_rows_come_from_the_card(site: Path, runs_dir: Path) -> None:
    md = (site / "index.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| [full_kv]") and "MiB |" in line and "ms |" in line
            and md.index("### Persist / restore") < md.index(line)]
    assert rows == [f"| [full_kv](methods/full_kv.md) | tiny | needle | [{_run_id(runs_dir, 'b')}](runs/{_run_id(runs_dir, 'b')}.md) "
                    "| 0.267 MiB | 1.70 ms | 1.10 ms | 58.0 ms |"]
    assert '<h3 id="persist">' in (site / "index.html").read_text()


def test_no_persist_table_and_a_note_without_a_card(tmp_path: Path) -> None:
    write_run(tmp_path / "runs/a", "full_kv", "needle", "tiny", grid_rows(lambda n, d: 1.0, lambda n: n))
    build_report([tmp_path / "runs"], tmp_path / "site")
    index = (tmp_path / "site/index.md").read_text()
    assert "Persist / restore" not in index
    assert "Not drawn: no run of this task that finished ok has a memory card" in index
    assert "Not drawn: no run of this method has a memory card" in (tmp_path / "site/methods/full_kv.md").read_text()
    assert not (tmp_path / "site/figures/needle/required_vs_accuracy.svg").exists()


def test_every_figure_csv_has_named_columns_and_a_row_per_point(site: Path) -> None:
    fig = site / "figures/needle"
    heat = pd.read_csv(fig / "heatmap.csv")
    assert list(heat.columns) == ["run_id", "method", "model", "depth", "context_length", "accuracy", "n"]
    assert len(heat) == 4 * 6 and (heat["n"] == 1).all()  # 4 runs × 2 lengths × 3 depths
    acc = pd.read_csv(fig / "accuracy_vs_length.csv")
    assert list(acc.columns) == ["run_id", "method", "model", "metric", "stat", "context_length", "value"]
    assert len(acc) == 4 * 2
    c = acc[acc["method"] == "full_kv"].groupby("context_length")["value"].apply(set)
    assert c[256] == {1.0} and c[1024] == {1.0, 0.0}  # run c scores 1 at 256 tokens only
    ttft = pd.read_csv(fig / "ttft_vs_length.csv")
    assert len(ttft) == 4 * 2 * 2 and set(ttft["metric"]) == {"ttft_query_s", "ttft_cold_s"}
    par = pd.read_csv(fig / "pareto.csv")
    assert list(par.columns) == ["run_id", "method", "model", "state_bytes", "accuracy", "pareto"] and len(par) == 4
    itl = pd.read_csv(fig / "itl.csv")
    assert list(itl.columns) == ["run_id", "method", "model", "sample_id", "rep", "itl_s"] and len(itl) == 4 * 6 * 3  # 3 gaps a sample


def test_leaderboard_values_from_the_frame_equal_hand_computed(tmp_path: Path) -> None:
    rows = [_row(i, {"context_length": 512}, score, state, 3, None, "x") for i, (score, state) in enumerate([(1.0, 100), (0.0, 300), (1.0, 200)])]
    for r, ttft in zip(rows, (0.010, 0.030, 0.020)):
        r["ttft_query_s"] = ttft
    write_run(tmp_path / "runs/a", "full_kv", "needle", "tiny", rows)
    df = tidy.frame(load_runs([tmp_path / "runs"]), itl_gaps=True)
    stats = cuts.per_run(df)["full_kv__needle__tiny"]
    assert stats.stat("state_bytes") == (200.0, None) and stats.stat("state_bytes", "max") == (300.0, None)
    assert stats.stat("ttft_query_s", "p50") == (0.020, None)
    assert stats.stat("itl_s", "p50") == (pytest.approx(0.0205), None)  # gaps 20 and 21 ms in each of 3 samples
    acc = stats.accuracy  # 2 of 3: Wilson, p = 2/3, n = 3, z = 1.96
    z, p, n = 1.959963984540054, 2 / 3, 3
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert acc["mean"] == pytest.approx(p) and acc["ci95"] == pytest.approx([centre - half, centre + half])
    build_report([tmp_path / "runs"], tmp_path / "site")
    index = (tmp_path / "site/index.md").read_text()
    row = f"| 0.667 (Wilson 95% CI {centre - half:.3f}–{centre + half:.3f}), n=3 | 0.000191 MiB | 500 MiB (host RSS) | 20.0 ms |"
    assert row in index, index


def test_frame_reads_the_card_and_persisted_memory(runs_dir: Path) -> None:
    df = tidy.frame(load_runs([runs_dir]))
    b = df[df["run_id"] == _run_id(runs_dir, "b")].iloc[0]
    assert b["persisted_bytes"] == 279605 and b["save_s"] == 0.0017 and b["persist_ingest_s"] == 0.058
    assert b["card.required_phase"] == "ingest" and b["card.required_bytes"] == 600 * MIB == b["required_bytes"]
    assert b["card.weights_bytes_source"] == "tensors" and b["model.dtype"] == "bfloat16"
    assert df[df["run_id"] == _run_id(runs_dir, "a")]["persisted_bytes"].isna().all()


def test_escaped_model_names_in_the_new_tables(tmp_path: Path) -> None:
    write_run(tmp_path / "runs/a", "full_kv", "needle", "<b>m</b>", grid_rows(lambda n, d: 1.0, lambda n: n))
    add_card(tmp_path / "runs/a", 100, persist=PERSIST, model="<b>m</b>")
    build_report([tmp_path / "runs"], tmp_path / "site")
    for page in ("index.html", "index.md"):
        text = (tmp_path / "site" / page).read_text()
        assert "<b>m" not in text and "&lt;b&gt;m&lt;/b&gt;" in text


def test_coinciding_points_share_one_label_block():
    import pandas as pd

    from harness.reporting.memory import label_groups

    groups = label_groups(pd.Series([1.0, 1.01, 2.0, 2.0]), pd.Series([1.0, 1.0, 1.0, 0.5]), pd.Series(["a", "b", "c", "d"]))
    assert sorted(labels for _, labels in groups) == [["a", "b"], ["c"], ["d"]]  # a, b overlap; c, d differ in y
    assert dict((tuple(labels), xy) for xy, labels in groups)[("a", "b")] == (1.0, 1.0)
