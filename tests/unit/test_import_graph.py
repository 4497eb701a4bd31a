"""The modules of ``bisnesgpt`` import each other without a cycle.

Every import counts, at module level or inside a function (a lazy import that closes a
cycle is still a cycle); only imports under ``if TYPE_CHECKING:`` are left out. A module
importing a package depends on that package's ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bisnesgpt

pytestmark = pytest.mark.unit

SRC = Path(bisnesgpt.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known and name != this}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*stack[stack.index(target):], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle() -> None:
    paths = sorted(SRC.rglob("*.py"))
    known = {module_name(p) for p in paths}
    graph = {module_name(p): imports_of(p, known) for p in paths}
    # A package's own __init__ importing its submodules is how packages work, not a cycle.
    for name, targets in graph.items():
        if name in known and any(p.name == "__init__.py" and module_name(p) == name for p in paths):
            graph[name] = {t for t in targets if not t.startswith(name + ".")}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checker_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# What each package may import (docs/architecture.md says why); ``core`` and ``config`` are
# allowed everywhere. A new edge is a design decision: add it here and to the document.
BASE = {"core", "config", "bisnesgpt"}
ALLOWED: dict[str, set[str] | None] = {
    "core": set(),
    "config": set(),
    "db": set(),
    "infra": {"db"},
    "coordination": {"db", "infra"},
    "processes.base": {"db", "infra", "coordination", "health", "messaging"},
    "health": {"db", "infra", "coordination", "processes.base", "messaging", "media"},
    "messaging": {"db", "infra", "coordination", "processes.base", "health", "phones", "engines.meta"},
    "phones": {"db", "messaging"},
    "tenancy": {"db"},
    "media": {"db"},
    "conversations": {"db"},
    "webhooks": {"db", "infra", "coordination", "processes.base", "health", "messaging"},
    "engines": {"db", "infra", "coordination", "processes.base", "health", "messaging"},
    "engines.meta": {"db", "infra", "coordination", "processes.base", "health", "messaging", "phones", "engines",
                     "api", "media"},
    "engines.wwebjs": {"db", "infra", "coordination", "processes.base", "health", "messaging", "phones", "engines",
                       "webhooks", "sandbox.wweb", "media"},
    "sandbox": set(),
    "sandbox.meta_emulator": {"sandbox", "engines.meta"},
    "sandbox.wweb": {"db", "sandbox", "engines.wwebjs", "cli"},
    "api": {"db", "infra", "coordination", "processes.base", "health", "messaging", "phones", "tenancy", "webhooks",
            "engines.meta", "engines.wwebjs", "media", "conversations"},
    "dashboard": {"db", "infra", "coordination", "processes.base", "health", "messaging", "phones", "tenancy",
                  "webhooks", "engines.meta", "engines.wwebjs", "api"},
    "orchestrator": {"db", "infra", "coordination", "health", "processes.base"},
    "processes": None,  # roles and runtime assemble everything
    "cli": None,
    "__main__": {"cli"},
}
BASE_MODULES = {"bisnesgpt.processes.component", "bisnesgpt.processes.context"}


def package_of(module: str) -> str:
    if module in BASE_MODULES:
        return "processes.base"
    parts = module.split(".")[1:]
    if not parts:
        return "bisnesgpt"
    if parts[0] in ("engines", "sandbox") and len(parts) > 1 and (SRC / parts[0] / parts[1]).is_dir():
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def test_packages_import_only_what_the_map_allows() -> None:
    paths = sorted(SRC.rglob("*.py"))
    known = {module_name(p) for p in paths}
    unexpected: set[str] = set()
    for path in paths:
        source = package_of(module_name(path))
        allowed = ALLOWED.get(source, set())
        if allowed is None:
            continue
        for target in imports_of(path, known):
            package = package_of(target)
            if package != source and package not in BASE and package not in allowed:
                unexpected.add(f"{module_name(path)} -> {target} ({source} -> {package})")
    assert not unexpected, "imports the map (docs/architecture.md) does not allow:\n" + "\n".join(sorted(unexpected))
