"""Defaults live in the dataclasses; the YAML files repeat them so that a resolved config (and every
run's config.yaml) shows every value. These tests keep the two identical: a default changed in one
place and not the other fails here, naming the file and the field.

Covered: every method and task option (``configs/method``, ``configs/task``, plugins included),
the ``run:`` block and top-level keys of ``configs/config.yaml`` and the ``train:`` block of
``configs/train.yaml``. Model files are presets of one dataclass (each names a different model), so
for them only the keys are checked. A YAML value that is an interpolation (``${model.name}``) is
derived from other groups, so it has no dataclass counterpart to equal.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from harness.models import ModelConfig
from harness.registry import config_files
from harness.settings import RunConfig, TopConfig
from methods import REGISTRY as METHODS
from tasks import REGISTRY as TASKS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def mismatches(cls: type, values: dict[str, Any], where: str, presets: bool = False) -> list[str]:
    """Every disagreement between the YAML ``values`` and dataclass ``cls``; ``[]`` when none.

    Defaults (``presets=False``): the same fields, and each YAML value equal to its default.
    Presets: the YAML keys are fields and every required field is set.
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    out = []
    for key in sorted(set(values) - set(fields)):
        close = difflib.get_close_matches(key, list(fields), n=1)
        out.append(f"{where}.{key}: not a field of {cls.__name__}" + (f", did you mean '{where}.{close[0]}'?" if close else ""))
    for name, f in fields.items():
        d = default(f)
        if name not in values:
            if d is dataclasses.MISSING or not presets:
                out.append(f"{where}.{name}: missing from the YAML (dataclass default {d!r})" if d is not dataclasses.MISSING
                           else f"{where}.{name}: required field missing from the YAML")
            continue
        v = values[name]
        if presets or d is dataclasses.MISSING or (isinstance(v, str) and "${" in v):
            continue
        if _plain(v) != _plain(d) or type(_plain(v)) is not type(_plain(d)) and not (isinstance(d, float) and isinstance(v, int)):
            out.append(f"{where}.{name}: YAML {v!r} != dataclass default {d!r}")
    return out


def _yaml(path: Path, key: str | None = None) -> dict[str, Any]:
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return cfg if key is None else cfg[key]


def _option_cases() -> list:
    cases = []
    for group, reg in (("method", METHODS), ("task", TASKS)):
        for name in reg.names():
            cases.append(pytest.param(group, name, config_files(group)[name], id=f"{group}/{name}"))
    return cases


@pytest.mark.parametrize("group, name, path", _option_cases())
def test_option_yaml_repeats_its_dataclass_defaults(group: str, name: str, path: Path) -> None:
    reg = METHODS if group == "method" else TASKS
    values = _yaml(path)
    assert values.pop("name") == name, f"{path}: 'name' must equal the file name"
    assert mismatches(reg.get(name).Config, values, group) == [], path


def test_run_settings_repeat_their_dataclass_defaults() -> None:
    top = _yaml(CONFIGS / "config.yaml")
    assert mismatches(RunConfig, top["run"], "run") == []
    scalars = {k: v for k, v in top.items() if k not in ("defaults", "hydra", "run")}
    assert mismatches(TopConfig, scalars, "config") == []


def test_train_settings_repeat_their_dataclass_defaults() -> None:
    from harness.train import trainable
    from methods import REGISTRY as METHODS

    # configs/train.yaml holds the defaults of the trainable method's trainer (found through the registry)
    assert trainable() == ["deltamem"]
    config = METHODS.get("deltamem").trainer().Config
    assert mismatches(config, _yaml(CONFIGS / "train.yaml", "train"), "train") == []


@pytest.mark.parametrize("path", sorted((CONFIGS / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_model_presets_name_only_fields(path: Path) -> None:
    values = _yaml(path)
    assert values["name"] == path.stem
    assert mismatches(ModelConfig, values, "model", presets=True) == []


# --- the checker itself: a changed default, a new field, a misspelt key --------------------------

def test_a_default_changed_in_the_dataclass_only_fails() -> None:
    values = _yaml(CONFIGS / "config.yaml", "run")
    assert mismatches(RunConfig, values, "run") == []
    changed = dataclasses.make_dataclass("Changed", [("repetitions", int, dataclasses.field(default=2))], bases=(RunConfig,))
    assert mismatches(changed, values, "run") == ["run.repetitions: YAML 1 != dataclass default 2"]


def test_a_default_changed_in_the_yaml_only_fails(tmp_path: Path) -> None:
    src = CONFIGS / "config.yaml"
    edited = tmp_path / "config.yaml"
    edited.write_text(src.read_text().replace("  repetitions: 1 ", "  repetitions: 3 ", 1))
    assert mismatches(RunConfig, _yaml(edited, "run"), "run") == ["run.repetitions: YAML 3 != dataclass default 1"]


def test_a_new_field_missing_from_the_yaml_and_a_misspelt_key_fail() -> None:
    grown = dataclasses.make_dataclass("Grown", [("template", str, dataclasses.field(default="plain"))], bases=(RunConfig,))
    values = _yaml(CONFIGS / "config.yaml", "run") | {"warmpu": 1}
    assert mismatches(grown, values, "run") == ["run.warmpu: not a field of Grown, did you mean 'run.warmup'?",
                                                "run.template: missing from the YAML (dataclass default 'plain')"]


def test_float_defaults_accept_integer_yaml_but_not_strings() -> None:
    assert mismatches(RunConfig, _yaml(CONFIGS / "config.yaml", "run") | {"min_duration_s": 0}, "run") == []
    assert mismatches(RunConfig, _yaml(CONFIGS / "config.yaml", "run") | {"min_duration_s": "0"}, "run") != []
