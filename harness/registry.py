"""Plugin registries: one plugin = one module; the registry key is the module name.

Built-in plugins are the modules of a package (``methods``, ``tasks``) with a Hydra option file in
``configs/<kind>/``. Your own plugins live outside the repository, in folders named by the
environment variable ``MEMHARNESS_PLUGINS`` (``os.pathsep``-separated), laid out like Hydra groups:

    my_plugins/method/echo.py     # a Method subclass with name = "echo" and its Config dataclass
    my_plugins/method/echo.yaml   # name: echo, then every Config field with its default
    my_plugins/task/...           # tasks the same way; model/ and experiment/ may hold YAML only

Each folder is added to Hydra's config search path, so ``method=echo`` works on the command line,
in sweeps (child processes inherit the variable) and in ``harness.api``; the shared contract tests
pick plugins up from ``names()`` without edits. A plugin may not reuse a built-in name.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import pkgutil
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

PLUGINS_ENV = "MEMHARNESS_PLUGINS"


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
        """Built-in plugins (modules of the package with a ``configs/<kind>/<name>.yaml``; helper
        modules such as ``tasks/haystack.py`` have none) and plugins from ``MEMHARNESS_PLUGINS``."""
        return sorted(set(self._builtin()) | set(self._plugins()))

    def _builtin(self) -> list[str]:
        pkg = importlib.import_module(self.package)
        modules = {m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_") and m.name != "base"}
        return sorted(modules & set(_packaged(self.kind)))

    def _plugins(self) -> dict[str, Path]:
        """name -> module file, for plugin folders holding both ``<kind>/<name>.py`` and ``.yaml``."""
        return {n: p.with_suffix(".py") for n, p in config_files(self.kind).items()
                if n not in _packaged(self.kind) and p.with_suffix(".py").is_file()}

    def get(self, name: str) -> type:
        valid = self.names()
        if name not in valid:
            raise ConfigError(suggest(self.kind, str(name), valid))
        plugins = self._plugins()
        module = _load_file(f"memharness_plugins.{self.kind}.{name}", plugins[name]) if name in plugins \
            else importlib.import_module(f"{self.package}.{name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, self.base) and obj is not self.base and getattr(obj, "name", None) == name:
                return obj
        raise ConfigError(f"{self.kind} module '{module.__name__}' ({module.__file__}) defines no {self.base.__name__} named '{name}'")


def plugin_dirs() -> list[Path]:
    """The folders named by ``MEMHARNESS_PLUGINS``, in order; each must exist."""
    dirs = [Path(p).expanduser().resolve() for p in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if p.strip()]
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"invalid value for '{PLUGINS_ENV}': {str(d)!r} is not a folder")
    return dirs


def _packaged(group: str) -> dict[str, Path]:
    from importlib.resources import files

    folder = files("configs").joinpath(group)
    return {p.name[:-5]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")} if folder.is_dir() else {}


def config_files(group: str) -> dict[str, Path]:
    """Option name -> YAML file of Hydra group ``group``: the packaged ``configs/<group>/`` plus
    ``<folder>/<group>/`` of every plugin folder. A plugin option may not shadow another one."""
    out = _packaged(group)
    for d in plugin_dirs():
        for p in sorted((d / group).glob("*.yaml")):
            if p.stem in out:
                raise ConfigError(f"{group} '{p.stem}' in {p} is already defined by {out[p.stem]}; rename the plugin")
            out[p.stem] = p
    return out


def search_path() -> list[str]:
    """Hydra search-path entries for the plugin folders (resolver ``memharness_plugins`` in the
    primary configs' ``hydra.searchpath``)."""
    return [f"file://{d}" for d in plugin_dirs()]


def _load_file(module_name: str, path: Path) -> Any:
    """Import a plugin module from its file (once per process)."""
    if module_name in sys.modules and getattr(sys.modules[module_name], "__file__", None) == str(path):
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


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
