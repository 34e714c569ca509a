"""The package's import graph: acyclic (imports inside functions count), and no package reaches into
another package's private (``_name``) modules or names.

Layers: harness (CLI, runs, measurement) -> methods / tasks (plugins) -> kernels. Plugins may use
the harness's public helpers (registry, storage, models); nothing may use another package's
``_private`` parts, which are free to change.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "methods", "tasks", "kernels", "reports", "configs")

# (importing module, imported private module) pairs tolerated for now. The test fails when an entry
# is no longer needed, so the list can only shrink: drop an entry once its import is gone.
# harness.train: δ-mem training moves next to δ-mem (methods/) -- training move in progress.
ALLOWED_PRIVATE: set[tuple[str, str]] = set()  # (importer, private module) pairs tolerated; none today


def _modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages (a package is its __init__)."""
    out = {}
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _type_checking_only(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every executed import statement, at any depth (functions included); ``if TYPE_CHECKING:``
    blocks are skipped because they never run."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            stack.append(child)


def import_graph(root: Path = ROOT) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """(module -> modules it imports, within the packages; [(importer, module, name)] for every
    imported name, for the private-name check)."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    names: list[tuple[str, str, str]] = []

    def resolve(dotted: str) -> str | None:  # the longest prefix that is one of our modules
        parts = dotted.split(".")
        while parts and ".".join(parts) not in mods:
            parts.pop()
        return ".".join(parts) or None

    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative import
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names]
                # ``from pkg import sub`` of submodules only needs the submodules (the package itself
                # is a parent, imported implicitly, which the graph leaves out everywhere)
                targets = subs if all(s in mods for s in subs) else [base] + subs
                names += [(mod, base, a.name) for a in node.names]
            for t in targets:
                r = resolve(t)
                if r is not None and r != mod:
                    graph[mod].add(r)
    return graph, names


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative DFS, white/grey/black)."""
    colour = dict.fromkeys(graph, 0)
    for start in sorted(graph):
        if colour[start]:
            continue
        path, its = [start], [iter(sorted(graph[start]))]
        colour[start] = 1
        while its:
            nxt = next(its[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                its.pop()
            elif colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                path.append(nxt)
                its.append(iter(sorted(graph[nxt])))
    return None


def private_crossings(graph: dict[str, set[str]], names: list[tuple[str, str, str]]) -> set[tuple[str, str]]:
    """(importer, target) where target is another top-level package's ``_private`` module or name."""
    out = set()

    def private(dotted: str) -> bool:
        return any(p.startswith("_") and not p.startswith("__") for p in dotted.split(".")[1:])

    for mod, deps in graph.items():
        out |= {(mod, d) for d in deps if d.split(".")[0] != mod.split(".")[0] and private(d)}
    for mod, base, name in names:
        if base.split(".")[0] in PACKAGES and base.split(".")[0] != mod.split(".")[0] and (private(base) or name.startswith("_")):
            out.add((mod, base if private(base) else f"{base}.{name}"))
    return out


def test_the_graph_sees_function_level_imports() -> None:
    graph, _ = import_graph()
    assert "harness.run" in graph["harness.checks"]  # imported inside validate()
    assert "methods" in graph["harness.run"] and "tasks" in graph["harness.run"]  # inside build()
    assert "methods.base" not in graph["harness.models"]  # TYPE_CHECKING-only imports never run


def test_find_cycle_finds_a_hidden_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_import_graph_is_acyclic() -> None:
    graph, _ = import_graph()
    assert len(graph) > 50
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_package_imports_another_packages_private_parts() -> None:
    found = private_crossings(*import_graph())
    assert not found - ALLOWED_PRIVATE, f"private imports across packages: {sorted(found - ALLOWED_PRIVATE)}"
    assert not ALLOWED_PRIVATE - found, f"allow-list entries no longer needed (drop them): {sorted(ALLOWED_PRIVATE - found)}"


def test_private_check_catches_a_private_module_and_a_private_name(tmp_path) -> None:
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "methods" / "_lm.py").write_text("def storage(): ...\n")
    (tmp_path / "tasks" / "grid.py").write_text("def _cells(): ...\n")
    (tmp_path / "harness" / "a.py").write_text("def f():\n    from methods._lm import storage\n    from tasks.grid import _cells\n")
    (tmp_path / "methods" / "ok.py").write_text("from methods._lm import storage\nfrom . import _lm\n")
    graph, names = import_graph(tmp_path)
    assert private_crossings(graph, names) == {("harness.a", "methods._lm"), ("harness.a", "tasks.grid._cells")}


@pytest.mark.parametrize("pkg", PACKAGES)
def test_every_package_is_scanned(pkg: str) -> None:
    assert pkg in _modules()
