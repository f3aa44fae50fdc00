"""The rules of docs/architecture.md, checked against the code: floors, no upward import, no
cycle between packages, entry points imported by nobody, SQL only in the store, no private
names across packages, a docstring on every module, modules of readable size."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pytest_perfsig"

CORE = {"errors", "metrics", "monspec", "windows", "verdict", "aggregates", "judges", "health"}
ADAPTERS = {"load", "sources", "dynatrace", "store", "registry", "aws", "remediation"}
GATE = {"gate"}
VIEWS = {"report"}
ENTRY_POINTS = {"plugin", "options", "items", "cli", "cli_store", "lambdas"}
FLOORS = {
    **dict.fromkeys(CORE, 0),
    **dict.fromkeys(ADAPTERS, 1),
    **dict.fromkeys(GATE, 2),
    **dict.fromkeys(VIEWS, 3),
    **dict.fromkeys(ENTRY_POINTS, 4),
}
# The pytest face is three modules: options and items exist for plugin alone; the store's
# commands exist for the ``perfsig`` command alone.
FACE = {"options": {"plugin"}, "items": {"plugin"}, "cli_store": {"cli"}}
MAX_LINES = 450


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(("pytest_perfsig", *parts)), path


def top(module: str) -> str:
    """The package or top-level module a module belongs to (``gate`` for ``pytest_perfsig.gate.run``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(module: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(imported module, names, line) of every import, at any depth (lazy imports count too)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names], node.lineno


def package_imports() -> list[tuple[str, str, str, list[str], int]]:
    """(importer, its top, imported top, names, line) for imports within the package."""
    found = []
    for module, path in modules():
        for target, names, line in imports(module, path):
            if target == "pytest_perfsig" or target.startswith("pytest_perfsig."):
                found.append((module, top(module), top(target), names, line))
    return found


def test_every_module_has_a_floor() -> None:
    unknown = {top(m) for m, _ in modules()} - set(FLOORS) - {""}
    assert not unknown, f"place these in docs/architecture.md and in FLOORS: {sorted(unknown)}"


def test_no_import_runs_upward() -> None:
    upward = [
        f"{m}:{line} imports {target} (floor {FLOORS[target]} > {FLOORS[src]})"
        for m, src, target, _, line in package_imports()
        if src and target and FLOORS[target] > FLOORS[src]
    ]
    assert not upward, "\n".join(upward)


def test_entry_points_are_imported_by_nobody() -> None:
    bad = [
        f"{m}:{line} imports {target}"
        for m, src, target, _, line in package_imports()
        if target in ENTRY_POINTS and src != target and src not in FACE.get(target, set())
    ]
    assert not bad, "\n".join(bad)


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for _, src, target, _, _ in package_imports():
        if src and target and src != target:
            graph.setdefault(src, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(p for p in graph if reaches(p, p, {p}))
    assert not cycles, f"packages in an import cycle: {cycles} ({ {p: sorted(graph[p]) for p in cycles} })"


def test_no_private_name_crosses_a_package() -> None:
    bad = [
        f"{m}:{line} imports {', '.join(n for n in names if n.startswith('_'))} from {target}"
        for m, src, target, names, line in package_imports()
        if src != target and any(n.startswith("_") and not n.startswith("__") for n in names)
    ]
    assert not bad, "\n".join(bad)


def test_sql_lives_in_the_store() -> None:
    bad = []
    for module, path in modules():
        if top(module) == "store":
            continue
        text = path.read_text()
        if re.search(r"^\s*import sqlite3|\._query\(|\._transaction\(|\._statement\(|\._db\b", text, re.M):
            bad.append(module)
    assert not bad, f"SQL or the store's private methods outside store/: {bad}"


@pytest.mark.parametrize(("module", "path"), list(modules()), ids=[m for m, _ in modules()])
def test_module_has_a_docstring_and_a_readable_size(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text())
    doc = ast.get_docstring(tree)
    if path.name == "__init__.py" and not doc and len(tree.body) <= 1:
        return  # an empty package marker
    assert doc and doc.strip().splitlines()[0].strip(), (
        f"{module}: the first docstring line says what it is for"
    )
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines; split it along its concerns"


def test_the_locust_process_imports_no_monspec_models_or_statistics() -> None:
    # The capture runs inside every Locust process: its start-up stays light.
    import subprocess
    import sys

    probe = (
        "import sys, pytest_perfsig.load.capture, pytest_perfsig.load.locust_main; "
        "print(sorted(m for m in ('pydantic', 'scipy', 'numpy', 'json5') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
