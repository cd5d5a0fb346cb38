"""The package layout is the architecture: which part may import which, checked on every module.

runner/ holds eleven parts, each a package; the package's own top (`runner/__init__.py`,
`errors.py`) imports none of them and every part may import it. Dependencies point inward:
a part may import only the parts listed for it below, and the graph of what the parts really
import has no cycle. Third-party libraries that do I/O are confined to the parts whose job
they are, and the pure core imports none.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import runner
from runner import errors

RUNNER = Path(__file__).resolve().parent.parent / "runner"
TOP = "runner"  # runner/__init__.py and runner/errors.py: importable by every part

# part -> the parts it may import (besides itself and the top). Every pair left out is a
# "may never import" rule, checked below one by one.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "templating": frozenset({"core"}),
    "repo": frozenset({"core"}),
    "store": frozenset({"core"}),
    "providers": frozenset({"core"}),
    "checking": frozenset({"core", "templating", "repo"}),
    "engine": frozenset({"core", "templating", "store", "providers"}),
    "gitops": frozenset({"core", "repo", "checking", "engine", "store"}),
    "simulation": frozenset(
        {"core", "templating", "store", "providers", "engine", "repo", "checking"}
    ),
    "review": frozenset({"core", "templating", "repo", "checking"}),
    "server": frozenset(
        {"core", "templating", "repo", "checking", "engine", "store", "providers", "gitops"}
    ),
    "cli": frozenset(
        {"core", "templating", "repo", "checking", "engine", "store", "providers", "gitops"}
        | {"server", "simulation", "review"}
    ),
}
NEVER = sorted(
    (part, other)
    for part in MAY_IMPORT
    for other in MAY_IMPORT
    if other not in MAY_IMPORT[part] and other != part
)

# Imports that break a rule today and are left for a later step, each with its reason.
# (importing module, imported part)
TEMPORARY_EXCEPTIONS: frozenset[tuple[str, str]] = frozenset()

# Libraries that do I/O: the core imports none of them.
IO_LIBRARIES = frozenset(
    {
        "asyncio",
        "multiprocessing",
        "os",
        "resource",
        "shutil",
        "signal",
        "socket",
        "subprocess",
        "tempfile",
        "threading",
        "aiohttp",
        "httpx",
        "httpx_aiohttp",
        "jinja2",
        "prometheus_client",
        "psycopg",
        "psycopg_pool",
        "rich",
        "sqlite3",
        "starlette",
        "uvicorn",
        "uvloop",
        "watchfiles",
        "playwright",
    }
)
# library -> the only parts that may import it (the composition root, cli, may import all).
LIBRARY_HOMES: dict[str, frozenset[str]] = {
    "sqlite3": frozenset({"store"}),
    "psycopg": frozenset({"store"}),
    "psycopg_pool": frozenset({"store"}),
    "starlette": frozenset({"server"}),
    "uvicorn": frozenset({"server"}),
    "prometheus_client": frozenset({"server"}),
    "watchfiles": frozenset({"gitops"}),
    "jinja2": frozenset({"templating"}),
    "pygments": frozenset({"server"}),  # the dashboard's highlighted files
    # Providers speak HTTP to email APIs; checking asks a running runner (`--against URL`).
    "httpx": frozenset({"providers", "checking"}),
    "httpx_aiohttp": frozenset({"providers"}),
    "aiohttp": frozenset({"providers"}),
    # The preview's screenshots drive a headless Chromium.
    "playwright": frozenset({"review"}),
}


def imported_modules(source: str) -> set[str]:
    """Every module named by an import statement anywhere in `source` (absolute names), including
    imports inside functions and `if TYPE_CHECKING:` blocks: a type is a dependency too."""
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


def part_of(module: str) -> str:
    """The part a `runner.*` module belongs to (TOP for the package's own top)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("errors", "__init__"):
        return TOP
    if parts[1] == "__main__":  # `python -m runner` is the command line
        return "cli"
    return parts[1]


@functools.cache
def modules() -> dict[str, frozenset[str]]:
    """Every module of runner/ -> the modules it imports."""
    found: dict[str, frozenset[str]] = {}
    for path in sorted(RUNNER.rglob("*.py")):
        parts = path.relative_to(RUNNER.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = frozenset(imported_modules(path.read_text(encoding="utf-8")))
    return found


def part_imports(part: str) -> Iterator[tuple[str, str]]:
    """(module of `part`, imported runner part) for every import across parts."""
    for module, imported in modules().items():
        if part_of(module) != part:
            continue
        for name in imported:
            if name == "runner" or name.startswith("runner."):
                other = part_of(name)
                if other != part:
                    yield module, other


def part_graph() -> dict[str, set[str]]:
    """part -> the parts its modules import (the top left out)."""
    graph: dict[str, set[str]] = {part: set() for part in MAY_IMPORT}
    for part in MAY_IMPORT:
        graph[part] = {other for _, other in part_imports(part) if other != TOP}
    return graph


def layers(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The parts in layers: each layer imports only the layers before it. AssertionError
    naming the parts left when the graph has a cycle."""
    placed: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(graph):
        layer = sorted(p for p in graph if p not in done and graph[p] <= done)
        assert layer, f"the parts {sorted(set(graph) - done)} import each other in a cycle"
        placed.append(layer)
        done.update(layer)
    return placed


def test_every_package_is_a_declared_part() -> None:
    packages = {path.parent.name for path in RUNNER.glob("*/__init__.py")}
    assert packages == set(MAY_IMPORT)
    top_modules = {path.stem for path in RUNNER.glob("*.py")}
    assert top_modules == {"__init__", "__main__", "errors"}


def test_the_top_imports_no_part() -> None:
    for module in ("runner", "runner.errors"):
        assert not [n for n in modules()[module] if n.startswith("runner.")], module


@pytest.mark.parametrize(("part", "other"), NEVER, ids=[f"{p}-never-{o}" for p, o in NEVER])
def test_part_never_imports(part: str, other: str) -> None:
    offenders = sorted(
        module
        for module, imported in part_imports(part)
        if imported == other and (module, other) not in TEMPORARY_EXCEPTIONS
    )
    assert offenders == [], f"{part} may never import {other}"


def test_the_rules_themselves_have_no_cycle() -> None:
    layers({part: set(allowed) for part, allowed in MAY_IMPORT.items()})


def test_the_parts_import_each_other_without_cycles() -> None:
    placed = layers(part_graph())
    print("\n".join(f"layer {n}: {' '.join(parts)}" for n, parts in enumerate(placed, 1)))
    assert placed[0] == ["core"]
    assert placed[-1] == ["cli"]


@pytest.mark.parametrize("part", sorted(MAY_IMPORT))
def test_io_libraries_stay_in_their_parts(part: str) -> None:
    bad: list[str] = []
    for module, imported in modules().items():
        if part_of(module) != part:
            continue
        for name in imported:
            library = name.split(".")[0]
            if part == "core" and library in IO_LIBRARIES:
                bad.append(f"{module} imports {name} (the core does no I/O)")
            homes = LIBRARY_HOMES.get(library)
            if homes is not None and part != "cli" and part not in homes:
                bad.append(f"{module} imports {name} (only {', '.join(sorted(homes))} may)")
    assert bad == []


# What the engine never reaches for itself: the composition root (server, cli) reads the
# settings and wires its metrics, clock and providers in through the engine's own protocols.
ENGINE_NEVER_IMPORTS = ("runner.server", "runner.cli", "runner.core.settings", "prometheus_client")


@pytest.mark.parametrize("forbidden", ENGINE_NEVER_IMPORTS)
def test_the_engine_is_wired_by_the_composition_root(forbidden: str) -> None:
    offenders = sorted(
        f"{module} imports {name}"
        for module, imported in modules().items()
        if part_of(module) == "engine"
        for name in imported
        if name == forbidden or name.startswith(forbidden + ".")
    )
    assert offenders == []


# module -> why it may start processes: every `git` call goes through runner.repo.git.
SUBPROCESS_MODULES = {
    "runner.repo.git": "the one module that runs git",
    "runner.templating.renderprocess": "the sandboxed template renderer",
}


def test_only_the_git_module_and_the_renderer_start_processes() -> None:
    starting = {m for m, imported in modules().items() if "subprocess" in imported}
    assert starting == SUBPROCESS_MODULES.keys()
    for path in RUNNER.rglob("*.py"):
        if path != RUNNER / "repo" / "git.py":
            assert '"git"' not in path.read_text(encoding="utf-8"), path


def test_the_check_sees_imports_in_every_form() -> None:
    source = (
        "import subprocess\nfrom sqlite3 import connect\nimport httpx as h\n"
        "def f():\n    import watchfiles\n"
        "from runner import errors\nfrom .engine import x\nfrom runner.core.model import A\n"
    )
    names = imported_modules(source)
    assert {"subprocess", "sqlite3", "httpx", "watchfiles"} <= names
    assert {"runner.errors", "runner.engine", "runner.core.model"} <= names
    assert [part_of(n) for n in ("runner.errors", "runner.engine.x", "runner.core.model")] == [
        TOP,
        "engine",
        "core",
    ]


def test_a_cycle_between_parts_is_named() -> None:
    with pytest.raises(AssertionError, match=r"\['a', 'b'\] import each other"):
        layers({"a": {"b"}, "b": {"a"}, "c": set()})


def public_exceptions() -> Iterator[type[BaseException]]:
    """Every exception class defined in runner/ whose name is public."""
    for info in pkgutil.walk_packages(runner.__path__, "runner."):
        if info.name == "runner.__main__":
            continue  # running it is the CLI
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
                and not name.startswith("_")
            ):
                yield value


def test_every_public_error_derives_from_the_root_and_is_drawn_in_the_tree() -> None:
    found = {cls.__name__: cls for cls in public_exceptions()}
    assert {"AuthError", "RequestError", "MassDeleteRefused", "JsonRefused"} <= found.keys()
    outside = sorted(
        name for name, cls in found.items() if not issubclass(cls, errors.PostwrightError)
    )
    assert outside == []
    tree = errors.__doc__ or ""
    drawn = {line.lstrip("│├└─ ").split(" ")[0] for line in tree.splitlines()}
    assert sorted(found.keys() - drawn) == []


def test_code_and_docs_cite_only_what_ships_with_them() -> None:
    # Users read docs/ and the code, never the team's specification: a "SPEC 3.2" citation
    # would send them to a document they cannot open.
    root = RUNNER.parent
    shipped = [*RUNNER.rglob("*.py"), *(root / "docs").rglob("*.md"), root / "README.md"]
    citing = [
        str(path.relative_to(root))
        for path in shipped
        if re.search(r"\bSPEC(\.md| ?§| ?[0-9])", path.read_text(encoding="utf-8"))
    ]
    assert citing == []


def test_the_dashboard_package_imports_none_of_its_modules() -> None:
    """Importing a page runs the package first; were the package to import the pages, a page
    would be imported again, half-built, from inside itself (routes.py imports them)."""
    source = (RUNNER / "server" / "ui" / "__init__.py").read_text(encoding="utf-8")
    assert imported_modules(source) <= {"__future__"}
