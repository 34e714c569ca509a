"""Bad input: every malformed name, value or file gets one clear error naming the field, and leaves
no result behind (no summary.json: a config error is not a run)."""

from __future__ import annotations

import csv

import pytest
from _harness_cli import run_cli, sweep_dir

from harness.api import compose
from harness.launch import validate
from harness.registry import ConfigError

# overrides on top of model=tiny_random -> a regex the error must match (it names the field)
BAD_VALUES = {
    "depth 150": (["task.depths=[50,150]"], r"'task\.depths': 150; expected percents between 0 and 100"),
    "negative length": (["task.context_lengths=[-512]"], r"'task\.context_lengths': -512; expected integers >= 64"),
    "unknown method field": (["+method.windw=64"], r"unknown field 'method\.windw'"),
    "unknown task field, did you mean": (["+task.depht=[50]"], r"unknown field 'task\.depht', did you mean 'task\.depths'\?"),
    "unknown run field": (["+run.timeot_s=5"], r"unknown field 'run\.timeot_s', did you mean 'run\.timeout_s'"),
    "wrong type": (["run.limit=abc"], r"'run\.limit': 'abc'; expected null or a positive integer"),
    "wrong type in a method": (["method=window", "method.window=big"], r"'method\.window': 'big'; expected a positive integer"),
    "unknown window positions": (["method=window", "method.positions=streaming"], r"'method\.positions': 'streaming'; expected original or shifted"),
    "negative timeout": (["run.timeout_s=-1"], r"'run\.timeout_s': -1"),
    "unknown launcher": (["launcher=fork"], r"'launcher': 'fork'; expected process or inline"),
    "force not a bool": (["force=maybe"], r"'force': 'maybe'; expected true or false"),
    "bad model dtype": (["model.dtype=float13"], r"'model\.dtype': 'float13'"),
    "missing jsonl file": (["task=jsonl", "task.path=/nonexistent/data.jsonl"], r"cannot read dataset file '/nonexistent/data\.jsonl' \(task\.path\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_value_names_the_field(case: str) -> None:
    overrides, pattern = BAD_VALUES[case]
    with pytest.raises(ConfigError, match=pattern):
        validate(compose(["model=tiny_random", *overrides]))


def test_malformed_jsonl_names_file_line_and_field(tmp_path) -> None:
    bad = tmp_path / "data.jsonl"
    bad.write_text('{"context": "x", "question": "q?", "answers": ["a"]}\n{"context": "x", "answers": "a"}\nnot json\n')
    with pytest.raises(ConfigError) as e:
        validate(compose(["model=tiny_random", "task=jsonl", f"task.path={bad}"]))
    assert f"{bad}:2: field 'question'" in str(e.value) and f"{bad}:3: invalid JSON" in str(e.value)


def test_setting_an_unknown_key_without_plus_is_refused() -> None:
    with pytest.raises(Exception, match=r"method\.windw"):
        compose(["model=tiny_random", "method.windw=64"])


@pytest.mark.parametrize("arg, expected", [
    ("method=ful_kv", "unknown method 'ful_kv', did you mean 'full_kv'?"),
    ("task=neddle", "unknown task 'neddle', did you mean 'needle'?"),
    ("model=tiny_randm", "unknown model 'tiny_randm', did you mean 'tiny_random'?"),
    ("experiment=smoek", "unknown experiment 'smoek', did you mean 'smoke'?"),
])
def test_unknown_names_fail_before_anything_runs(tmp_path, arg: str, expected: str) -> None:
    r = run_cli([arg, f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 2 and expected in r.stderr, r.stderr
    assert not any(tmp_path.iterdir())


def test_bad_value_in_a_single_run_leaves_no_result(tmp_path) -> None:
    r = run_cli(["experiment=smoke", "task.depths=[150]", f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 2 and "error: invalid value for 'task.depths': 150" in r.stderr, r.stderr
    assert r.stderr.count("error:") == 1 and "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())  # not even an empty run folder


def test_bad_value_in_any_sweep_run_stops_the_sweep_before_it_starts(tmp_path) -> None:
    r = run_cli(["-m", "experiment=smoke", "method=full_kv,no_memory", "task.depths=[50],[150]", f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("error:") == 1 and "error: 2 of 4 sweep runs are invalid; no run was started" in r.stderr, r.stderr
    assert "  sweep run #1 (experiment=smoke method=full_kv task.depths=[150]" in r.stderr and "'task.depths': 150" in r.stderr
    assert "  sweep run #3 (experiment=smoke method=no_memory task.depths=[150]" in r.stderr
    assert not any(tmp_path.iterdir())  # not one run started


def test_a_window_not_below_a_grid_length_stops_the_sweep_naming_every_bad_run(tmp_path) -> None:
    # two windowed methods x three context lengths (+ full_kv): the 256-token window does not fit
    # 128 or 256 tokens, so 4 of the 9 runs are impossible; all are named in one error, none starts
    r = run_cli(["-m", "experiment=smoke", "method=window,deltamem,full_kv", "task.context_lengths=[128],[256],[1024]",
                 "kv_window=256", f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("error:") == 1 and "4 of 9 sweep runs are invalid; no run was started" in r.stderr, r.stderr
    for method in ("window", "deltamem"):
        for n in (128, 256):
            assert f"method={method} task.context_lengths=[{n}] kv_window=256" in r.stderr
            assert f"is not smaller than the context ({n} tokens)" in r.stderr
        assert f"method={method} task.context_lengths=[1024]" not in r.stderr
    assert "(experiment=smoke method=full_kv" not in r.stderr and "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())  # not one run started


def test_every_length_of_one_run_is_named_in_its_error() -> None:
    with pytest.raises(ConfigError) as e:
        validate(compose(["experiment=smoke", "method=window", "method.window=300", "task.context_lengths=[128,256,512]"]))
    assert "(128 tokens)" in str(e.value) and "(256 tokens)" in str(e.value) and "(512 tokens)" not in str(e.value)


def test_window_not_below_the_tokenised_context_is_a_config_error_not_a_result(tmp_path) -> None:
    # a jsonl task has no length grid: the check happens once the model has tokenised the context;
    # that run (in its child) stops with a config error and writes nothing, the other run goes on
    r = run_cli(["-m", "model=tiny_random", "task=jsonl", "method=window", "method.window=8,4096", "run.limit=1", "run.warmup=0",
                 "run.progress=false", f"out_dir={tmp_path}"], tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "invalid value for 'method.window': 4096" in r.stderr
    d = sweep_dir(tmp_path)
    assert len(list(d.glob("*/summary.json"))) == 1
    rows = {r_["overrides"].split("method.window=")[1].split()[0]: r_ for r_ in csv.DictReader((d / "sweep_summary.csv").open())}
    assert rows["8"]["status"] == "ok"
    assert rows["4096"]["status"] == "config_error" and "method.window" in rows["4096"]["error"]
    bad = rows["4096"]["run_dir"]
    assert not any((d / bad.rsplit("/", 1)[-1] / f).exists() for f in ("summary.json", "samples.jsonl", "config.yaml", "env.json"))
