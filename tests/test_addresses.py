"""Email addresses in automation files: `from` and `reply_to` must be addresses.

Syntax only (no DNS lookup); a display name is allowed the way mail programs
write it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from runner.checking.tree import Tree, TreeChecker
from runner.core.addresses import _EVERYDAY, address_problem, everyday
from runner.repo.snapshot import MemorySnapshot

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PATH = "automations/promo.yaml"

GOOD = [
    "news@shop.example",
    "news@shop.test",
    "Shop <news@shop.example>",
    "Postwright Shop <hello@shop.postwright.dev>",
    '"Shop, Inc." <news@shop.example>',
    "Shop Inc. <news@shop.example>",
    "쇼핑몰 <news@shop.example>",
    '"Ann \\"the shop\\" Lee" <ann@shop.example>',
    "<news@shop.example>",
    "first.last+tag@sub.shop.example",
    "news@bücher.example",
]

BAD = [
    "not an email",
    "news@",
    "@shop.example",
    "news@@shop.example",
    "news@shop",
    "news@localhost",
    "news@-shop.example",
    "news shop@shop.example",
    "Shop <news@shop.example",
    "Shop news@shop.example>",
    "Shop <>",
    "Shop <news@shop.example> <other@shop.example>",
    "Shop, Inc <news@shop.example>",
    "a@shop.example, b@shop.example",
    "news@shop.example\nBcc: victim@elsewhere.example",
    "{{ subscriber.email }}",
    '"Shop " Inc" <news@shop.example>',
]


@pytest.mark.parametrize("value", GOOD)
def test_good_addresses_pass(value: str) -> None:
    assert address_problem(value) is None


@pytest.mark.parametrize("value", BAD)
def test_bad_addresses_are_refused_with_a_reason(value: str) -> None:
    problem = address_problem(value)
    assert problem is not None and len(problem) > 10


def library_accepts(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False, test_environment=True)
    except EmailNotValidError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.from_regex(_EVERYDAY, fullmatch=True), st.text(max_size=80)))
@example("ab--cd@shop.example")
@example("news@xn--bcher-kva.example")
@example("news@shop.onion")
@example("news@shop.123")
@example("a" * 65 + "@shop.example")
@example("news@" + "a" * 64 + ".example")
def test_the_everyday_shortcut_accepts_only_what_the_library_accepts(address: str) -> None:
    if everyday(address):
        assert library_accepts(address), address


def test_the_everyday_shortcut_covers_the_usual_senders() -> None:
    assert everyday("news@shop.example") and everyday("first.last+tag@mail.shop-1.co.uk")
    assert not everyday("news@localhost") and not everyday("news@bücher.example")


def test_no_dns_module_is_loaded_by_checking() -> None:
    address_problem("news@shop.example")
    assert "dns.resolver" not in sys.modules


def automation(email: str) -> bytes:
    return (
        "id: promo\nstatus: draft\ntrigger: {type: api}\n"
        f"email:\n{email}  subject: Hi\n  text: Hello\n"
    ).encode()


def check(content: bytes) -> Tree:
    return TreeChecker().check(MemorySnapshot({PATH: content}), NOW)


@pytest.mark.parametrize(
    ("email", "line", "col"),
    [
        ('  from: "not an email"\n', 5, 9),
        ("  from: Shop <news@shop.example>\n  reply_to: help at shop\n", 6, 13),
        ("  from: Shop, Inc <news@shop.example>\n", 5, 9),
    ],
)
def test_a_bad_address_is_a_finding_at_its_value(email: str, line: int, col: int) -> None:
    tree = check(automation(email))
    found = [(f.rule, f.line, f.col) for f in tree.findings]
    assert found == [("invalid-address", line, col)]
    finding = tree.findings[0]
    assert finding.severity == "error" and finding.automation == "promo"
    assert finding.help is not None and "Shop, Inc" in finding.help
    assert tree.versions == {}  # a file with a bad address is never applied


def test_good_addresses_leave_the_file_valid() -> None:
    tree = check(
        automation("  from: '\"Shop, Inc.\" <news@shop.test>'\n  reply_to: help@shop.test\n")
    )
    assert tree.findings == []
    assert set(tree.versions) == {"promo"}


def test_every_bad_address_of_a_file_is_reported_once() -> None:
    tree = check(automation("  from: nobody\n  reply_to: nobody either\n"))
    assert [(f.rule, f.line) for f in tree.findings] == [
        ("invalid-address", 5),
        ("invalid-address", 6),
    ]
    again = check(automation("  from: ab\n"))  # too short: the schema says so, once
    assert [f.rule for f in again.findings] == ["schema"]


def test_a_boolean_word_as_address_is_reported_once() -> None:
    tree = check(automation("  from: news@shop.test\n  reply_to: no\n"))
    assert [f.rule for f in tree.findings] == ["yaml-boolean"]
