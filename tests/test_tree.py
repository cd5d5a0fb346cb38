"""The tree checker: an incremental check equals a full check of the same snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runner.checking.tree import TreeChecker
from runner.repo.snapshot import MemorySnapshot

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def automation(ident: str, *, subject: str = "Hi", extra: str = "") -> bytes:
    return (
        f"id: {ident}\nstatus: draft\ntrigger: {{type: api}}\n{extra}"
        f"email:\n  from: news@shop.test\n  subject: {subject}\n"
        f"  html_file: ../templates/{ident}.html\n"
    ).encode()


BASE = {
    "automations/a.yaml": automation("a"),
    "automations/b.yaml": automation("b"),
    "automations/c.yaml": automation("c", extra="provider: nowhere\n"),
    "automations/old.yml": b"id: old\n",
    "templates/a.html": b"<p>{{ subscriber.email }}</p>",
    "templates/b.html": b"<p>{{ nobody }}</p>",
    "templates/c.html": b"<p>c</p>",
}

CHANGES = [
    {"automations/a.yaml": automation("a", subject="New")},
    {"templates/b.html": b"<p>fixed {{ subscriber.email }}</p>"},
    {"templates/a.html": None, "automations/old.yml": None},
    {"automations/d.yaml": automation("a"), "automations/c.yaml": None},
    {"postwright.yaml": b"providers: {nowhere: {type: outbox}}\n"},
    {"automations/b.yaml": b"id: b\nstatus: [\n"},
]


@pytest.mark.parametrize("change", CHANGES, ids=range(len(CHANGES)))
def test_an_incremental_check_equals_a_full_check(change: dict[str, bytes | None]) -> None:
    checker = TreeChecker()
    before = checker.check(MemorySnapshot(BASE), NOW)
    files = {path: content for path, content in {**BASE, **change}.items() if content is not None}
    after = MemorySnapshot(files)
    incremental = checker.check(after, NOW, previous=before, changed=change.keys())
    full = TreeChecker().check(after, NOW)
    assert incremental.findings == full.findings
    assert incremental.versions.keys() == full.versions.keys()
    assert incremental.template_users == full.template_users


def test_retain_forgets_versions_no_tree_holds() -> None:
    checker = TreeChecker()
    before = checker.check(MemorySnapshot(BASE), NOW)
    edited = {**BASE, "automations/a.yaml": automation("a", subject="Edited")}
    after = checker.check(
        MemorySnapshot(edited), NOW, previous=before, changed=["automations/a.yaml"]
    )
    assert len(checker._automations) == 4  # a (twice), b, c
    checker.retain(after)
    assert len(checker._automations) == 3
    again = checker.check(MemorySnapshot(edited), NOW)
    assert again.findings == after.findings
