"""The report as a reader sees it: a small site opened in headless Chromium.

Static checks of the HTML (tests/test_report.py) cannot tell whether a browser really shows the
leaderboard and loads the figures (a wrong relative path, a blocked file, a script error that
empties a table). Here Chromium loads each page inside a probe page that reads the rendered DOM
after scripts ran (`--dump-dom`) and reports what is there; screenshots are kept as artifacts in
`test-artifacts/browser/` (or `$MEMHARNESS_TEST_ARTIFACTS/browser/`).

Chromium comes from Debian's `chromium` package (`scripts/install.sh` installs it); where it is
missing and this process may use apt, the fixture installs it; otherwise the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.reporting import build_report
from test_report import grid_rows, write_run
from test_report_memory import PERSIST, add_card

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ARTIFACTS = Path(os.environ.get("MEMHARNESS_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts")) / "browser"

# Loaded next to the page under test; reads the page's DOM once it (and its images) finished loading.
PROBE = """<!doctype html><html><body><pre id="probe">pending</pre>
<iframe id="page" src="{src}" width="1280" height="1600"></iframe>
<script>
document.getElementById("page").addEventListener("load", () => {{
  const d = document.getElementById("page").contentDocument;
  if (!d) {{ document.getElementById("probe").textContent = "no access to the page"; return; }}
  const boards = [...d.querySelectorAll("table.leaderboard")].map(t => t.querySelectorAll("tbody tr").length);
  const imgs = [...d.querySelectorAll("img")].map(i => ({{src: i.getAttribute("src"), loaded: i.complete && i.naturalWidth > 0}}));
  const tables = [...d.querySelectorAll("table")].map(t => t.querySelectorAll("tr").length);
  document.getElementById("probe").textContent = JSON.stringify({{title: d.title, boards, imgs, tables,
    text: d.body.innerText.length}});
}});
</script></body></html>"""


def _find_browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


@pytest.fixture(scope="module")
def browser() -> str:
    found = _find_browser()
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("Chromium is not installed and cannot be installed here (needs apt-get as root); run scripts/install.sh")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run("apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)",
                          shell=True, capture_output=True, text=True, env=env, timeout=900)
    found = _find_browser()
    if not found:
        pytest.skip(f"Chromium could not be installed with apt-get: {done.stderr.strip()[-300:]}")
    return found


def _chromium(browser: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files", "--hide-scrollbars",
             "--virtual-time-budget=5000"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)


def inspect(browser: str, page: Path, tmp: Path) -> dict:
    """What Chromium rendered for `page`: leaderboard rows, images and whether each loaded."""
    probe = tmp / f"probe_{page.stem}.html"
    probe.write_text(PROBE.format(src=page.resolve().as_uri()))
    done = _chromium(browser, "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"Chromium printed no DOM for {page}: {done.stderr[-500:]}"
    text = found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    assert text.startswith("{"), f"the probe did not read {page}: {text}"
    return json.loads(text)


def screenshot(browser: str, page: Path, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / f"{name}.png"
    out.unlink(missing_ok=True)
    _chromium(browser, f"--screenshot={out}", "--window-size=1280,1600", page.resolve().as_uri())
    assert out.is_file() and out.stat().st_size > 10_000, f"no screenshot of {page}"
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    write_run(runs / "a", "full_kv", "needle", "tiny", grid_rows(lambda n, d: 1.0, lambda n: n * 1024))
    add_card(runs / "a", 500, persist=PERSIST)  # the memory card figures and the persist / restore table
    write_run(runs / "b", "window", "needle", "tiny", grid_rows(lambda n, d: float(d == 100), lambda n: 64 * 1024))
    write_run(runs / "c", "no_memory", "needle", "tiny", grid_rows(lambda n, d: 0.0, lambda n: 0, n_tokens=1))
    out = tmp_path_factory.mktemp("site")
    build_report([runs], out)
    return out


def test_index_shows_one_leaderboard_row_per_run(browser: str, site: Path, tmp_path: Path) -> None:
    seen = inspect(browser, site / "index.html", tmp_path)
    assert seen["title"], seen
    assert seen["boards"] == [3], seen  # one task, three runs
    screenshot(browser, site / "index.html", "index")


def test_task_page_loads_every_figure(browser: str, site: Path, tmp_path: Path) -> None:
    seen = inspect(browser, site / "tasks" / "needle.html", tmp_path)
    assert len(seen["imgs"]) >= 4, seen  # heatmap, accuracy/state/ttft vs length, ...
    assert all(i["loaded"] for i in seen["imgs"]), [i["src"] for i in seen["imgs"] if not i["loaded"]]
    screenshot(browser, site / "tasks" / "needle.html", "task_needle")


def test_run_page_renders_its_tables(browser: str, site: Path, tmp_path: Path) -> None:
    page = site / "runs" / "full_kv__needle__tiny.html"
    seen = inspect(browser, page, tmp_path)
    assert seen["tables"] and max(seen["tables"]) >= 6, seen  # the per-sample table: a header + 6 samples
    assert seen["text"] > 500, seen
    screenshot(browser, page, "run_full_kv")


def test_a_missing_figure_is_caught(browser: str, site: Path, tmp_path: Path) -> None:
    """The probe can fail: delete one figure and the page reports it as not loaded."""
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    victim = next((copy / "figures" / "needle").glob("*.svg"))
    victim.unlink()
    seen = inspect(browser, copy / "tasks" / "needle.html", tmp_path)
    missing = [i["src"] for i in seen["imgs"] if not i["loaded"]]
    assert len(missing) == 1 and missing[0].endswith(victim.name), seen


def test_memory_card_figures_load(browser: str, site: Path, tmp_path: Path) -> None:
    """The index's required-bytes-vs-accuracy figure and the method card's stacked bars load."""
    for page, name in (("index.html", "required_vs_accuracy.svg"), ("methods/full_kv.html", "memory_card.svg")):
        seen = inspect(browser, site / page, tmp_path)
        assert [i["loaded"] for i in seen["imgs"] if i["src"].endswith(name)] == [True], seen
    screenshot(browser, site / "methods" / "full_kv.html", "method_full_kv")
