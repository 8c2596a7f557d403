"""The architecture's dependency rule, checked on the source: layers import only downward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the packages it must never import (at module level or inside functions)
FORBIDDEN = {
    "dsl": ("engine", "stdlib_tools"),
    "engine/run": (
        "engine.models",
        "engine.store",
        "engine.observe",
        "engine.agent",
        "engine.cli",
        "engine.batch",
        "engine.sim",
        "engine.backends",
        "engine.api",
    ),
    "engine/models": (
        "engine.store.journal",
        "engine.observe",
        "engine.agent",
        "engine.cli",
        "engine.batch",
    ),
    "engine/store": ("engine.observe", "engine.agent", "engine.cli", "engine.batch"),
    "engine/observe": ("engine.agent", "engine.cli", "engine.batch"),
    "engine/batch": ("engine.cli",),
    # The planner and the agent loop sit under the commands that drive them.
    "engine/agent": ("engine.cli", "engine.batch", "engine.sim", "engine.backends"),
    # `planfile bench`'s simulator drives engine/run under a virtual clock; it reads no
    # journal (the command hands it a replayed run's durations) and draws nothing.
    "engine/sim": ("engine.store", "engine.observe", "engine.agent", "engine.cli", "engine.batch"),
    # Executor backends run tool and raw model calls; the run's records stay with the
    # coordinator, so a backend never touches the stores, observers, agents or CLI.
    "engine/backends": (
        "engine.store",
        "engine.observe",
        "engine.agent",
        "engine.cli",
        "engine.batch",
    ),
    "stdlib_tools": ("engine",),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, with the line (absolute names; relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def _violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in _imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    return bad


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layer_imports_only_downward(folder: str) -> None:
    """A layer never imports the layers above it (README, Architecture)."""
    assert _violations(folder, FORBIDDEN[folder]) == []


def test_every_module_says_what_it_is_for() -> None:
    """Each module opens with a docstring whose first line says what it is for."""
    missing = []
    for folder in ("dsl", "engine", "stdlib_tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
            if not doc or not doc.strip().splitlines()[0].strip():
                missing.append(str(path.relative_to(ROOT)))
    assert missing == []
