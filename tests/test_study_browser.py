"""The committed study page as a reader sees it: docs/study/index.html in headless Chromium, every
figure loaded (uses test_browser's probe and Chromium fixture)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from test_browser import browser, inspect, screenshot  # noqa: F401  (browser is a fixture)

PAGE = Path(__file__).resolve().parents[1] / "docs" / "study" / "index.html"


@pytest.mark.skipif(not PAGE.is_file(), reason="docs/study/index.html not rendered")
def test_committed_study_page_loads_every_figure(browser: str, tmp_path: Path) -> None:  # noqa: F811
    seen = inspect(browser, PAGE, tmp_path)
    assert seen["title"].startswith("Fixed-size state"), seen
    assert len(seen["imgs"]) >= 4, seen  # part 1: one figure per rule + accuracy by age
    assert all(i["loaded"] for i in seen["imgs"]), [i["src"] for i in seen["imgs"] if not i["loaded"]]
    assert seen["tables"] and max(seen["tables"]) >= 21, seen  # the mechanism table: header + 20 rule × r rows
    html = PAGE.read_text(encoding="utf-8")
    assert len(seen["imgs"]) == len(re.findall(r"<img ", html))  # Chromium saw every figure the page has
    # every section that ran states n, the interval method, the device, the date and its command;
    # one that did not says so with its command
    for sid, body in re.findall(r'<section id="([a-z]+)">(.*?)</section>', html, re.S):
        if "not run yet:" in body:
            continue
        for fact in ("n", "interval", "device", "date", "command"):
            assert re.search(rf"<t[hd]>{fact}</t[hd]>", body), (sid, fact)
    screenshot(browser, PAGE, "study_index")
