"""The report: pages exist and link to each other relatively, model output is escaped, numbers are
the ones in the run files (golden index table), colours are stable per method, missing values read
n/a, and a real tiny sweep renders end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness import io
from harness.report import main
from harness.reporting import build_report
from harness.reporting.colors import method_colors
from harness.summary import summarize

GOLDEN = Path(__file__).parent / "golden" / "report_index.md"
MIB = 2**20
NO_GPU = "no CUDA device in use"
XSS = '<script>alert(1)</script> & "quoted" | piped'
GPU_KEYS = ["gpu_peak_allocated_bytes", "gpu_peak_reserved_bytes", "gpu_process_peak_bytes", "gpu_device_peak_bytes"]


def _row(i: int, slices: dict, score: float, state: int, n_tokens: int, gpu: int | None, prediction: str) -> dict:
    length = slices.get("context_length", 512)
    ingest, ttft = length * 1e-4, 0.010 + length * 1e-5
    itl = [0.020 + 0.001 * k for k in range(n_tokens - 1)]
    row = {"id": f"s{i}", "rep": 0, **slices, "slices": slices, "category": "", "prediction": prediction, "answers": ["saffron"],
           "score": score, "context_tokens": length, "question_tokens": 20, "n_tokens": n_tokens, "ingest_s": ingest,
           "ingest_tok_per_s": length / ingest, "ttft_query_s": ttft, "ttft_cold_s": ingest + ttft, "itl_s": itl,
           "e2e_s": ttft + sum(itl), "state_bytes": state, "state_bytes_peak": state, "attended_tokens": length + 20,
           "host_peak_rss_bytes": 500 * MIB}
    if n_tokens > 1:
        row["tpot_s"], row["decode_tok_per_s"] = sum(itl) / (n_tokens - 1), (n_tokens - 1) / sum(itl)
    else:
        for k in ("tpot_s", "decode_tok_per_s"):
            row[k], row[k + "_reason"] = None, "fewer than 2 tokens generated"
    for k in GPU_KEYS:
        row[k] = gpu if gpu is not None else None
        if gpu is None:
            row[k + "_reason"] = NO_GPU
    return row


def write_run(folder: Path, method: str, task: str, model: str, rows: list[dict], status: str = "ok",
              error: dict | None = None, gpu: bool = False, method_info: dict | None = None) -> Path:
    """A run folder as the harness writes it, with known values."""
    summary = summarize(rows)
    load = {"load_s": 1.5, "weights_bytes": 4 * MIB, "dtype": "float32", "device": "cuda:0" if gpu else "cpu", "host_peak_rss_bytes": 400 * MIB}
    for k in GPU_KEYS:
        load[k] = 3 * 2**30 if gpu and k == "gpu_process_peak_bytes" else (2**30 if gpu else None)
        if not gpu:
            load[k + "_reason"] = NO_GPU
    summary.update({"status": status, "error": error, "method": method, "task": task, "model": model, "method_config": {},
                    "task_config": {}, "run": {"warmup": 0}, "load": load if status == "ok" else {}, "wall_s": 12.0, "seed": 0,
                    "method_info": method_info or {"name": method}})
    env = {"date": "2026-01-02T03:04:05+00:00", "python": "3.11.7", "cpu": "Test CPU", "cpu_threads": 8, "torch_threads": 8,
           "gpu_count": 1 if gpu else 0, "gpus": [{"name": "Test GPU", "memory_bytes": 80 * 2**30}] if gpu else [],
           "cuda": "12.4" if gpu else None, "driver": "550.0" if gpu else None, "versions": {"torch": "2.4.0", "transformers": "5.24.0"},
           "git_sha": "0123456789abcdef0123", "git_dirty": True, "seed": 0}
    if not gpu:
        env["gpu_reason"] = "no CUDA device"
    io.write_text(folder / "config.yaml", f"method:\n  name: {method}\ntask:\n  name: {task}\nmodel:\n  name: {model}\n")
    io.write_json(folder / "env.json", env)
    io.write_jsonl(folder / "samples.jsonl", rows)
    io.write_json(folder / "summary.json", summary)
    return folder


def grid_rows(score, state, n_tokens: int = 4, gpu: int | None = None, prediction: str = "saffron") -> list[dict]:
    cells = [(n, d) for n in (256, 1024) for d in (0, 50, 100)]
    return [_row(i, {"context_length": n, "depth": d}, score(n, d), state(n), n_tokens, gpu, prediction) for i, (n, d) in enumerate(cells)]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    write_run(runs / "sweep/0", "full_kv", "needle", "tiny", grid_rows(lambda n, d: 1.0, lambda n: n * 1024))
    write_run(runs / "sweep/1", "window", "needle", "tiny", grid_rows(lambda n, d: float(d == 100), lambda n: 64 * 1024))
    write_run(runs / "sweep/2", "no_memory", "needle", "tiny", grid_rows(lambda n, d: 0.0, lambda n: 0, n_tokens=1, prediction=XSS),
              method_info={"name": "no_memory", "adapter": XSS, "heads": ["q", "o"]})
    write_run(runs / "gpu/0", "full_kv", "needle", "tiny-gpu", grid_rows(lambda n, d: 1.0, lambda n: n * 2048, gpu=2 * 2**30), gpu=True)
    recall = [_row(i, {"n_facts": k}, 1.0, 1000 * k, 3, None, "yes" + " <long>" * 100) for i, k in enumerate((1, 2, 4))]
    write_run(runs / "other/0", "full_kv", "recall", "tiny", recall)
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: boom <b>bold</b>\n'
    write_run(runs / "other/1", "window", "recall", "tiny", [], status="failed",
              error={"type": "RuntimeError", "message": "boom <b>bold</b>", "traceback": tb})
    return runs


@pytest.fixture(scope="module")
def site(runs_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build_report([runs_dir], out)
    return out


def pages(site: Path, ext: str) -> list[Path]:
    return sorted(site.rglob(f"*.{ext}"))


def test_every_page_exists_in_both_formats(site: Path) -> None:
    expected = ["index", "glossary", "tasks/needle", "tasks/recall", "methods/full_kv", "methods/window", "methods/no_memory",
                "runs/full_kv__needle__tiny", "runs/full_kv__needle__tiny-gpu", "runs/window__recall__tiny", "runs/no_memory__needle__tiny"]
    for page in expected:
        for ext in ("html", "md"):
            assert (site / f"{page}.{ext}").is_file(), f"{page}.{ext} missing"
    assert len(pages(site, "html")) == len(pages(site, "md")) == 4 + 3 + 6


def test_model_output_and_errors_are_escaped(site: Path) -> None:
    for page in pages(site, "html") + pages(site, "md"):
        text = page.read_text()
        if page.suffix == ".md":  # code fences show their content literally: a traceback may stay verbatim there
            text = re.sub(r"^(`{3,}).*?^\1$", "", text, flags=re.S | re.M)
        assert "<script>alert" not in text, page
        assert "<b>bold" not in text, page
    run = (site / "runs/no_memory__needle__tiny.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; " in run
    md = (site / "runs/no_memory__needle__tiny.md").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in md and r"\| piped" in md  # a pipe cannot split the table row
    failed = (site / "runs/window__recall__tiny.html").read_text()
    assert "RuntimeError: boom &lt;b&gt;bold&lt;/b&gt;" in failed  # the traceback is shown, escaped


def test_run_page_shows_what_the_method_reported(site: Path) -> None:
    """method_info (protocol, adapter provenance, kernel, ...) is shown, escaped, on the run page;
    a run whose method reported nothing beyond its name gets no Method section."""
    html = (site / "runs/no_memory__needle__tiny.html").read_text()
    section = html[html.index("<h2>Method</h2>"):html.index("<h2>Config</h2>")]
    assert "<th>adapter</th>" in section and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert "<th>heads</th>" in section and "[&#34;q&#34;, &#34;o&#34;]" in section
    md = (site / "runs/no_memory__needle__tiny.md").read_text()
    assert re.search(r"^\| adapter \| &lt;script&gt;alert\(1\)&lt;/script&gt; &amp; .* \\\| piped \|$", md, re.M), md
    assert "<h2>Method</h2>" not in (site / "runs/full_kv__recall__tiny.html").read_text()


def test_long_strings_are_cut_with_the_full_text_one_click_away(site: Path) -> None:
    html = (site / "runs/full_kv__recall__tiny.html").read_text()
    full = "yes" + " &lt;long&gt;" * 100
    assert html.count(f"<pre>{full}</pre></details>") == 3
    assert "<summary>yes &lt;long&gt;" in html
    md = (site / "runs/full_kv__recall__tiny.md").read_text()
    assert "(cut: 703 characters; full text in [samples.jsonl](full_kv__recall__tiny/samples.jsonl))" in md


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        for k, v in attrs:
            if k in ("href", "src") and v is not None:
                self.links.append(v)
            if k == "id" and v:
                self.ids.add(v)


def _parse(page: Path) -> _Links:
    p = _Links()
    p.feed(page.read_text())
    return p


def test_links_are_relative_and_resolve(site: Path) -> None:
    checked = 0
    for page in pages(site, "html") + pages(site, "md"):
        links = _parse(page).links if page.suffix == ".html" else re.findall(r"\]\(([^)\s]+)\)", page.read_text())
        for link in links:
            assert not re.match(r"^[a-z]+:|^/", link), f"{page}: non-relative link {link}"
            path, _, frag = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            assert target.is_file(), f"{page}: broken link {link}"
            if frag:
                ids = _parse(target).ids if target.suffix == ".html" else set(re.findall(r'id="([^"]+)"', target.read_text()))
                assert frag in ids, f"{page}: {link} points at a missing anchor"
            checked += 1
    assert checked > 500


def test_index_leaderboard_matches_golden(site: Path) -> None:
    text = (site / "index.md").read_text()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "index.md differs from tests/golden/report_index.md (UPDATE_GOLDEN=1 rewrites it)"
    # the same numbers, derived by hand: state = mean(256 KiB, 1 MiB); TTFT p50 = median of 12.56 and 20.24 ms;
    # decode = 3 tokens / 63 ms; the GPU run's peak is NVML's 3 GiB at load (> 2 GiB in the samples);
    # Wilson's lower bound for 6 of 6 is n / (n + z^2) = 6 / 9.84 = 0.610
    assert "| 1.000 (Wilson 95% CI 0.610–1.000), n=6 | 0.625 MiB | 500 MiB (host RSS) | 16.4 ms | 80.4 ms | 47.6 tok/s | 21.0 ms | 22.0 ms |" in text
    assert "| 1.25 MiB | 3.00 GiB (GPU) |" in text


def _svg_colour(svg: str, method: str) -> set[str]:
    colours = set()
    for m in re.finditer(rf'<g id="method--{method}--\d+">(.*?)</g>', svg, re.S):
        colours |= set(re.findall(r"(?:stroke|fill): (#[0-9a-f]{6})", m.group(1)))
    return colours


def test_one_colour_per_method_across_figures_and_pages(site: Path) -> None:
    expected = method_colors(["full_kv", "window", "no_memory"])
    assert len(set(expected.values())) == 3
    for method, colour in expected.items():
        for fig in ("heatmap", "accuracy_vs_length", "state_vs_length", "ttft_vs_length", "pareto", "itl"):
            svg = (site / f"figures/needle/{fig}.svg").read_text()
            found = _svg_colour(svg, method)
            if method == "no_memory" and fig in ("state_vs_length", "itl"):
                assert not found  # 0 bytes cannot sit on a log axis; one token has no gaps
                continue
            assert colour in found, f"{method} not drawn in {colour} in {fig}"
            assert not (found & (set(expected.values()) - {colour})), f"{fig}: {method} also drawn in another method's colour"
        for page in ("index.html", "tasks/needle.html", "methods/full_kv.html"):
            swatches = set(re.findall(rf'data-method="{method}" style="background: (#[0-9a-f]{{6}})"', (site / page).read_text()))
            assert swatches <= {colour}, page
        assert f'data-method="{method}" style="background: {colour}"' in (site / "index.html").read_text()


def test_null_values_render_as_na_with_reason(site: Path) -> None:
    html = (site / "index.html").read_text()
    row = next(line for line in html.splitlines() if "runs/no_memory__needle__tiny.html" in line and "<td" in line)
    assert '<abbr title="fewer than 2 tokens generated">n/a</abbr>' in row
    assert "0 tok/s" not in row and "0 ms" not in row
    card = (site / "methods/no_memory.md").read_text()
    row = next(line for line in card.splitlines() if "runs/no_memory__needle__tiny.md" in line and "tok/s" not in line and "n/a" in line)
    number = re.search(r"n/a \[\^(\d+)\]", row).group(1)
    assert re.search(rf"^\[\^{number}\]: n/a: fewer than 2 tokens generated$", card, re.M)
    env = (site / "methods/full_kv.html").read_text()  # env.json without triton: n/a with the reason, not a blank
    assert '<abbr title="triton not installed or not recorded">n/a</abbr>' in env


def test_failed_run_listed_with_status_and_link(site: Path) -> None:
    html = (site / "index.html").read_text()
    assert '<span class="status-failed">failed</span>' in html
    assert 'href="runs/window__recall__tiny.html"' in html
    assert "| failed | [window](methods/window.md) | tiny | [window__recall__tiny](runs/window__recall__tiny.md) |" in (site / "index.md").read_text()


def test_pages_show_no_absolute_path_of_a_run_folder(site: Path, runs_dir: Path) -> None:
    local = [str(runs_dir), str(runs_dir.resolve()), str(runs_dir.parent)]
    for ext in ("html", "md"):
        for page in pages(site, ext):
            text = page.read_text()
            assert not [p for p in local if p in text], f"{page.relative_to(site)} shows a local path"
        run = (site / f"runs/full_kv__needle__tiny.{ext}").read_text()
        assert f"{runs_dir.name}/sweep/0" in run  # the folder relative to what the report was built from


def test_accuracy_cells_name_their_interval_and_show_no_ci_for_one_sample(site: Path) -> None:
    index = (site / "index.md").read_text()
    assert "1.000 (Wilson 95% CI 0.610–1.000), n=6" in index  # 6 of 6: a lower bound below 1
    run = (site / "runs/full_kv__recall__tiny.md").read_text()
    assert run.count("1.000 (n=1, no CI)") == 3  # one sample per n_facts slice
    html = (site / "runs/full_kv__recall__tiny.html").read_text()
    assert 'title="n=1: a single sample gives no interval">1.000 (n=1, no CI)' in html
    assert 'title="Wilson score interval (0/1 scores, independent samples)"' in html


def test_figures_only_where_data_exist(site: Path) -> None:
    needle = (site / "tasks/needle.html").read_text()
    assert needle.count("<img ") == 7
    recall = (site / "tasks/recall.html").read_text()
    assert "Not drawn: the samples do not have both context_length and depth slices" in recall
    assert "Not drawn: the samples have no context_length slice" in recall
    assert (site / "figures/recall/pareto.svg").is_file() and (site / "figures/recall/itl.png").is_file()
    assert not (site / "figures/recall/heatmap.svg").exists()
    assert "Not on the log axis because the value is 0 at every length: no_memory · tiny." in needle


def test_glossary_carries_the_metric_definitions_exactly(site: Path) -> None:
    shipped = Path(__file__).parents[1] / "reports" / "templates" / "metrics.md"
    glossary = (site / "glossary.md").read_text()
    for line in shipped.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| name"):
            name, definition = (c.strip() for c in line.strip("|").split("|", 1))
            assert f"{name} | {definition}" in glossary


def test_a_rendered_report_is_not_read_as_runs(site: Path, tmp_path: Path, capsys) -> None:
    assert (site / "runs/full_kv__needle__tiny/summary.json").is_file()  # raw copies live in the site ...
    assert main([str(site), "--out", str(tmp_path / "again")]) == 2  # ... but are not runs of their own
    assert "no run folders found" in capsys.readouterr().err


def test_cli_without_runs_exits_nonzero(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "site")]) == 2
    assert "no run folders found under" in capsys.readouterr().err
    proc = subprocess.run([sys.executable, "-m", "harness.report", str(tmp_path / "nope"), "--out", str(tmp_path / "s")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "no such file or folder" in proc.stderr


def test_real_tiny_sweep_renders(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_module

    from harness.run import execute

    summaries = {}
    with initialize_config_module("configs", version_base="1.3"):
        for method, extra in (("full_kv", []), ("window", ["method.window=32"])):
            cfg = compose("config", overrides=[f"method={method}", "task=needle", "model=tiny_random", "run.warmup=0", "run.progress=false",
                                               "task.context_lengths=[64,128]", "task.depths=[0,100]", "task.max_new_tokens=3", *extra])
            summaries[method] = execute(cfg, tmp_path / "sweep" / method)
    assert all(s["status"] == "ok" for s in summaries.values()), summaries
    report = build_report([tmp_path / "sweep"], tmp_path / "site")
    assert [r.method for r in report.runs] == ["full_kv", "window"]
    index = (tmp_path / "site" / "index.md").read_text()
    state = summaries["full_kv"]["metrics"]["state_bytes"]["mean"] / MIB
    assert f"{state:.3g} MiB" in index or f"{state:.2f} MiB" in index
    for fig in ("heatmap", "accuracy_vs_length", "state_vs_length", "ttft_vs_length", "pareto", "itl"):
        assert (tmp_path / "site" / "figures" / "needle" / f"{fig}.svg").is_file()


def test_runs_sharing_method_task_model_are_named_by_their_differing_settings(tmp_path: Path) -> None:
    from harness.reporting.runs import load_runs

    for n in (4, 16):
        folder = write_run(tmp_path / f"r{n}", "full_kv", "kv_recall", "m", grid_rows(lambda n, d: 1.0, lambda n: 100))
        s = io.read_json(folder / "summary.json")
        s["task_config"] = {"num_facts": [n], "context_length": 2048}
        io.write_json(folder / "summary.json", s)
    write_run(tmp_path / "other", "window", "kv_recall", "m", grid_rows(lambda n, d: 0.0, lambda n: 50))
    ids = sorted(r.id for r in load_runs([tmp_path]))
    assert ids == ["full_kv__kv_recall__m__num_facts-16", "full_kv__kv_recall__m__num_facts-4", "window__kv_recall__m"]
