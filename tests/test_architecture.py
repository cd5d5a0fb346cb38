"""The pure core imports no I/O libraries: no processes, databases, network or web."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent.parent / "runner"
PURE = (
    "core/model",
    "core/config",
    "core/durations",
    "core/version",
    "core/findings",
    "core/rules",
    "core/lifecycle",
    "templating/checks",
    "templating/sandbox",
    "errors",
    "checking/semantics",
    "core/yamlread",
    "core/loader",
    "core/conditions",
    "core/timing",
)
PURE_MODULES = frozenset("runner." + module.replace("/", ".") for module in PURE)
PACKAGES = frozenset({"runner.core", "runner.templating", "runner.checking"})
FORBIDDEN = frozenset(
    {"subprocess", "sqlite3", "httpx", "psycopg", "watchfiles", "starlette", "fastapi", "uvicorn"}
)


def imported_modules(source: str) -> set[str]:
    """Every module named by an import statement anywhere in `source` (absolute names)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from . import x` inside runner/
                base = "runner" + (f".{node.module}" if node.module else "")
                names.update(f"{base}.{alias.name}" for alias in node.names)
                names.add(base)
            elif node.module:
                names.add(node.module)
                if node.module == "runner":
                    names.update(f"runner.{alias.name}" for alias in node.names)
    return names


def violations(module: str) -> list[str]:
    """Forbidden imports of one core module, and runner modules outside the core."""
    source = (RUNNER / f"{module}.py").read_text(encoding="utf-8")
    bad: list[str] = []
    for name in sorted(imported_modules(source)):
        parts = name.split(".")
        if parts[0] in FORBIDDEN:
            bad.append(name)
        elif parts[0] == "runner" and len(parts) > 1 and name not in PURE_MODULES | PACKAGES:
            bad.append(f"{name} (not a pure core module)")
    return bad


@pytest.mark.parametrize("module", PURE)
def test_core_module_imports_no_io(module: str) -> None:
    assert (RUNNER / f"{module}.py").is_file(), f"runner/{module}.py is part of the core"
    assert violations(module) == []


def test_the_check_sees_imports_in_every_form() -> None:
    source = (
        "import subprocess\nfrom sqlite3 import connect\nimport httpx as h\n"
        "def f():\n    import watchfiles\n"
        "from runner import history\nfrom .walk import x\nfrom runner.model import Automation\n"
    )
    names = imported_modules(source)
    assert {"subprocess", "sqlite3", "httpx", "watchfiles"} <= names
    assert {"runner.history", "runner.walk", "runner.model"} <= names
