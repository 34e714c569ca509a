"""Your own method as a plugin: one file + its YAML in a folder named by MEMHARNESS_PLUGINS, with no
edit to the repository. The shared contract and defaults tests pick it up, the CLI runs it, and the
test-only ``fault`` method stays out of the product's lists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _harness_cli import ROOT, run_cli, summaries
from harness.registry import PLUGINS_ENV, ConfigError
from methods import REGISTRY as METHODS

# What a user writes: a method that keeps only the last `keep` context tokens in the KV cache.
TAIL_PY = '''
from __future__ import annotations

from dataclasses import dataclass

from harness.registry import check
from methods.base import Context, MethodConfig
from methods.full_kv import FullKV


@dataclass
class TailConfig(MethodConfig):
    keep: int = 4096  # context tokens kept (the last ones)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(isinstance(self.keep, int) and self.keep > 0, "method.keep", "a positive integer", self.keep)


class Tail(FullKV):
    name = "tail"
    Config = TailConfig
    contract_overrides = {"keep": 128}  # the contract tests' contexts are ~300 tokens

    def validate(self, context_tokens: int) -> None:
        check(self.cfg.keep < context_tokens, "method.keep", "fewer tokens than the context", self.cfg.keep)

    def ingest(self, context: Context) -> None:
        ids = context.all_ids()[len(context.prefix_ids):][-self.cfg.keep:]
        super().ingest(Context(context.prefix_ids, [ids], [""]))
'''
TAIL_YAML = "# keep only the last `keep` context tokens\nname: tail\nchunk_size: 512\nkeep: 4096\n"


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    (tmp_path / "method").mkdir()
    (tmp_path / "method" / "tail.py").write_text(TAIL_PY)
    (tmp_path / "method" / "tail.yaml").write_text(TAIL_YAML)
    return tmp_path


def _env(plugin_dir: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), **{PLUGINS_ENV: str(plugin_dir)})


def test_a_new_method_passes_the_shared_tests_with_no_edit_to_tests(plugin_dir: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-k", "tail",
                        "tests/test_contracts.py", "tests/test_config_defaults.py"],
                       cwd=ROOT, env=_env(plugin_dir), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    passed = {line.split("::")[1] for line in r.stdout.splitlines() if line.startswith("PASSED")}
    assert {"test_method_contract[gemma3-tail]", "test_method_contract[qwen3-tail]", "test_method_contract[llama-tail]",
            "test_method_config_rejects_unknown_field[tail]", "test_method_name_is_its_registry_key[tail]",
            "test_option_yaml_repeats_its_dataclass_defaults[method/tail]"} <= passed, r.stdout[-3000:]


def test_the_cli_runs_a_plugin_and_suggests_its_name(plugin_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(PLUGINS_ENV, str(plugin_dir))  # run_cli passes the environment on
    out = tmp_path / "runs"
    r = run_cli(["method=tail", "method.keep=100", "task=passkey", "model=tiny_random", "task.context_lengths=[256]",
                 "task.depths=[50]", "run.warmup=0", "run.progress=false", f"out_dir={out}"], tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ((run, summary),) = summaries(out).items()
    assert summary["status"] == "ok" and summary["method_config"] == {"chunk_size": 512, "keep": 100}
    rows = [json.loads(line) for line in (out / run / "samples.jsonl").read_text().splitlines()]
    assert rows and all(r["attended_tokens"] < r["context_tokens"] for r in rows)  # only the tail was kept
    r = run_cli(["method=tial", "model=tiny_random"], tmp_path)
    assert r.returncode == 2 and "did you mean 'tail'?" in r.stderr


def test_fault_is_registered_only_by_the_test_suite(monkeypatch) -> None:
    assert "fault" in METHODS.names()  # tests/conftest.py adds tests/plugins
    monkeypatch.delenv(PLUGINS_ENV)
    assert "fault" not in METHODS.names()
    with pytest.raises(ConfigError) as e:
        METHODS.get("faul")
    assert "fault" not in str(e.value)


def test_a_plugin_may_not_shadow_a_builtin(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "method").mkdir()
    (tmp_path / "method" / "window.yaml").write_text("name: window\n")
    monkeypatch.setenv(PLUGINS_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=r"method 'window' in .*window\.yaml is already defined by .*configs/method/window\.yaml"):
        METHODS.names()


def test_a_missing_plugin_folder_names_the_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(PLUGINS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=rf"invalid value for '{PLUGINS_ENV}': .*nowhere.* is not a folder"):
        METHODS.names()
