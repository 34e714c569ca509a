"""Plugin registries: one plugin = one module; the registry key is the module name.

Plugins are discovered lazily by importing ``<package>.<name>``, so adding a method or task is one
file plus one YAML, and the shared contract tests pick it up from ``names()`` without edits.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import MISSING, fields
from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what was expected."""


def suggest(kind: str, name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f", did you mean '{close[0]}'?" if close else ""
    return f"unknown {kind} '{name}'{hint} valid: {', '.join(sorted(valid))}"


class Registry:
    """Maps a name to the plugin class defined in ``<package>.<name>``.

    A plugin module exposes exactly one public subclass of ``base`` whose ``name`` attribute equals
    the module name, plus its config dataclass as the class attribute ``Config``.
    """

    def __init__(self, kind: str, package: str, base: type) -> None:
        self.kind, self.package, self.base = kind, package, base

    def names(self) -> list[str]:
        """Plugins = modules of the package that have a Hydra option file ``configs/<kind>/<name>.yaml``
        (helper modules such as ``tasks/haystack.py`` have none)."""
        from importlib.resources import files

        pkg = importlib.import_module(self.package)
        modules = {m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_") and m.name != "base"}
        options = {p.name[:-5] for p in files("configs").joinpath(self.kind).iterdir() if p.name.endswith(".yaml")}
        return sorted(modules & options)

    def get(self, name: str) -> type:
        valid = self.names()
        if name not in valid:
            raise ConfigError(suggest(self.kind, str(name), valid))
        module = importlib.import_module(f"{self.package}.{name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, self.base) and obj is not self.base and getattr(obj, "name", None) == name:
                return obj
        raise ConfigError(f"{self.kind} module '{self.package}.{name}' defines no {self.base.__name__} named '{name}'")


def build_config(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``values``; unknown or missing keys name the field."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(known), n=1)
        hint = f", did you mean '{where}.{close[0]}'?" if close else ""
        raise ConfigError(f"unknown field '{where}.{unknown[0]}'{hint} valid fields: {', '.join(sorted(known))}")
    missing = [n for n, f in known.items() if n not in values and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ConfigError(f"missing required field '{where}.{missing[0]}'")
    return cls(**values)


def check(cond: bool, field: str, expected: str, value: Any) -> None:
    """Raise a ConfigError naming ``field`` when ``cond`` is false."""
    if not cond:
        raise ConfigError(f"invalid value for '{field}': {value!r}; expected {expected}")
