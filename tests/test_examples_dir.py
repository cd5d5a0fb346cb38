"""Every case under tests/examples/{valid,invalid}/ is a small repository checked as a tree.

A valid case yields no finding at all; an invalid case yields exactly the
`path:line:col: rule` lines of its `expected.txt`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.checking.tree import TreeChecker
from runner.repo.snapshot import DirectorySnapshot

EXAMPLES = Path(__file__).parent / "examples"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
EXPECTED = "expected.txt"


def _cases(kind: str) -> list[Path]:
    return sorted(p for p in (EXAMPLES / kind).iterdir() if p.is_dir())


def _found(root: Path) -> list[str]:
    paths = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != EXPECTED
    ]
    tree = TreeChecker().check(DirectorySnapshot(root, paths), NOW)
    return sorted(f"{f.path}:{f.line}:{f.col}: {f.rule}" for f in tree.findings)


def test_there_are_enough_cases() -> None:
    assert len(_cases("valid")) >= 6
    assert len(_cases("invalid")) >= 12


@pytest.mark.parametrize("case", _cases("valid"), ids=lambda p: p.name)
def test_valid_case_has_no_findings(case: Path) -> None:
    assert _found(case) == []


@pytest.mark.parametrize("case", _cases("invalid"), ids=lambda p: p.name)
def test_invalid_case_has_expected_findings(case: Path) -> None:
    expected = sorted(
        line.strip() for line in (case / EXPECTED).read_text().splitlines() if line.strip()
    )
    assert expected, "an invalid case lists at least one finding"
    assert _found(case) == expected
