"""The dialects the shared store SQL is rendered for: placeholders, list tests and batches."""

from __future__ import annotations

import pytest

from runner.store.postgres_rows import POSTGRES
from runner.store.sqlite_rows import SQLITE


def test_sqlite_keeps_the_shared_text_as_written() -> None:
    sql = "UPDATE t SET a = :reason WHERE id = ? AND b = :owner"
    assert SQLITE.render(sql) is sql


def test_postgres_renders_positional_and_named_placeholders_but_not_casts() -> None:
    rendered = POSTGRES.render("UPDATE t SET a = :reason, b = ?::text WHERE c = :owner_id")
    assert rendered == "UPDATE t SET a = %(reason)s, b = %s::text WHERE c = %(owner_id)s"


def test_postgres_refuses_shared_text_with_a_percent_sign() -> None:
    with pytest.raises(ValueError, match="may not contain '%'"):
        POSTGRES.render("SELECT * FROM t WHERE a LIKE 'x%' AND b = ?")


def test_list_tests_bind_one_value_each_in_sqlite_and_one_array_in_postgres() -> None:
    assert SQLITE.one_of("id", ["a", "b"]) == ("id IN (?, ?)", ["a", "b"])
    assert POSTGRES.one_of("seq", [3, 4], "bigint") == ("seq = ANY(%s::bigint[])", [[3, 4]])


def test_sqlite_cuts_lists_under_its_parameter_bound_postgres_keeps_them_whole() -> None:
    values = list(range(1201))
    assert [len(batch) for batch in SQLITE.batches(values)] == [500, 500, 201]
    assert POSTGRES.batches(values) == [values]
    assert SQLITE.batches([]) == [] and POSTGRES.batches([]) == []
