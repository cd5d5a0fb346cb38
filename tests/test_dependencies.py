"""Every third-party package runner/ imports is declared directly in pyproject.toml: one that
arrives only through another package (watchfiles through uvicorn[standard], say) can vanish
with that package's next release."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path

from tests.test_architecture import modules

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def normalized(name: str) -> str:
    """A distribution name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# Extras that runner/ itself imports from (behind an ImportError that says which extra).
RUNTIME_EXTRAS = ("preview",)


def declared_distributions() -> set[str]:
    """The names in `[project] dependencies` and the runtime extras, without versions, extras
    or markers."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    names = set()
    for requirement in [*project["dependencies"], *(r for e in RUNTIME_EXTRAS for r in extras[e])]:
        found = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert found is not None, f"pyproject.toml: unreadable requirement {requirement!r}"
        names.add(normalized(found.group()))
    return names


def third_party_imports() -> set[str]:
    """The top-level names of the packages runner/ imports, standard library left out."""
    tops = {name.split(".")[0] for imported in modules().values() for name in imported}
    return tops - set(sys.stdlib_module_names) - {"runner", "__future__"}


def undeclared(
    imports: Collection[str], declared: Collection[str], providers: Mapping[str, list[str]]
) -> list[str]:
    """Each import no declared distribution provides, with the distributions that do."""
    missing = []
    for name in sorted(imports):
        distributions = {normalized(d) for d in providers.get(name, [])}
        if not distributions & set(declared):
            missing.append(f"{name} (from {', '.join(sorted(distributions)) or 'nothing'})")
    return missing


def test_every_imported_package_is_declared_directly() -> None:
    providers = importlib.metadata.packages_distributions()
    missing = undeclared(third_party_imports(), declared_distributions(), providers)
    assert missing == [], "imported by runner/ but not in pyproject.toml dependencies"


def test_an_import_only_another_package_brings_is_reported() -> None:
    providers = {"watchfiles": ["watchfiles"], "uvicorn": ["uvicorn"], "yaml": ["PyYAML"]}
    declared = {"uvicorn", "pyyaml"}
    imports = {"uvicorn", "watchfiles", "yaml", "nowhere"}
    assert undeclared(imports, declared, providers) == [
        "nowhere (from nothing)",
        "watchfiles (from watchfiles)",
    ]


def test_the_scan_sees_the_packages_runner_imports() -> None:
    assert {"watchfiles", "starlette", "yaml", "pydantic_core"} <= third_party_imports()
