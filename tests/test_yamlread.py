"""The safe YAML reader: what it refuses, where it says so, and what it resolves to."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest
import yaml

from runner.core.findings import Finding
from runner.core.yamlread import MAX_BYTES, MAX_DEPTH, Document, read_yaml


def read(text: str | bytes) -> tuple[Document | None, list[Finding]]:
    content = text.encode() if isinstance(text, str) else text
    return read_yaml("automations/x.yaml", content)


def only(text: str | bytes) -> Finding:
    """The single finding `text` produces; the document must be refused."""
    document, found = read(text)
    assert document is None or found
    assert len(found) == 1, found
    return found[0]


def data(text: str) -> Any:
    document, found = read(text)
    assert found == []
    assert document is not None
    return document.data


# --- scalars resolve by the YAML 1.2 core schema ------------------------------


def test_plain_scalars_are_resolved_with_the_c_parser() -> None:
    assert data("num: 1\nb: true\nz: null\nflag: [1.5]\n") == {
        "num": 1,
        "b": True,
        "z": None,
        "flag": [1.5],
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v: 1", 1),
        ("v: -12", -12),
        ("v: 1.5", 1.5),
        ("v: 1e3", 1000.0),
        ("v: true", True),
        ("v: False", False),
        ("v: null", None),
        ("v: ~", None),
        ("v:", None),
    ],
)
def test_plain_scalars_resolve_by_yaml_1_2_core_rules(text: str, expected: Any) -> None:
    value = data(text)["v"]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v: 9:00", "9:00"),
        ("v: 22:00", "22:00"),
        ("v: 1:30:00", "1:30:00"),
        ("v: 2026-12-01", "2026-12-01"),
        ("v: 2026-12-01T09:00:00+09:00", "2026-12-01T09:00:00+09:00"),
        ("v: 0o17", "0o17"),
        ("v: 012", "012"),
        ("v: 1_000", "1_000"),
        ("v: '1'", "1"),
        ('v: "true"', "true"),
        ('v: "no"', "no"),
        ("v: !!str no", "no"),
        ("v: !!str 12", "12"),
        ("v: |\n  text\n", "text\n"),
    ],
)
def test_what_yaml_1_1_would_convert_stays_a_string(text: str, expected: str) -> None:
    assert data(text)["v"] == expected


def test_sexagesimal_looking_values_stay_strings_in_lists_and_keys() -> None:
    assert data("times: [9:00, 22:30]\n12:00: noon\n") == {
        "times": ["9:00", "22:30"],
        "12:00": "noon",
    }


# --- what is refused, and where -------------------------------------------------


@pytest.mark.parametrize("word", ["no", "No", "NO", "yes", "Yes", "on", "On", "off", "OFF"])
def test_yaml_1_1_boolean_values_are_errors_at_the_value(word: str) -> None:
    finding = only(f"a: 1\nflag: {word}\n")
    assert (finding.rule, finding.line, finding.col) == ("yaml-boolean", 2, 7)
    assert f'"{word}"' in finding.message


@pytest.mark.parametrize("word", ["on", "yes", "off", "no"])
def test_yaml_1_1_boolean_keys_are_errors_at_the_key(word: str) -> None:
    finding = only(f"a: 1\nnested:\n  {word}: push\n")
    assert (finding.rule, finding.line, finding.col) == ("yaml-boolean", 3, 3)


def test_single_letters_y_and_n_are_strings() -> None:
    # PyYAML resolves only the words; an automation id `y` must not need quotes.
    assert data("automation: y\nother: n\n") == {"automation": "y", "other": "n"}


def test_yaml_1_1_boolean_inside_a_flow_list() -> None:
    finding = only("days: [mon, off]\n")
    assert (finding.rule, finding.line, finding.col) == ("yaml-boolean", 1, 13)


def test_quoted_and_str_tagged_boolean_words_are_strings() -> None:
    assert data("a: 'no'\nb: \"on\"\nc: !!str yes\n'off': 1\n") == {
        "a": "no",
        "b": "on",
        "c": "yes",
        "off": 1,
    }


def test_duplicate_key_names_both_lines() -> None:
    finding = only("id: a\nname: x\nid: b\n")
    assert (finding.rule, finding.line, finding.col) == ("yaml-duplicate-key", 3, 1)
    assert "line 1" in finding.message


def test_nested_duplicate_key() -> None:
    finding = only("trigger:\n  type: event\n  event: a\n  type: api\n")
    assert (finding.rule, finding.line, finding.col) == ("yaml-duplicate-key", 4, 3)
    assert "`type`" in finding.message and "line 2" in finding.message


def test_duplicate_key_in_flow_mapping_and_quoted_spelling() -> None:
    finding = only('labels: {team: a, "team": b}\n')
    assert (finding.rule, finding.line, finding.col) == ("yaml-duplicate-key", 1, 19)


def test_duplicate_key_deep_in_a_list() -> None:
    finding = only("exit_on:\n  - event: a\n    where: {in_group: x, in_group: y}\n")
    assert (finding.rule, finding.line) == ("yaml-duplicate-key", 3)


def test_same_key_in_sibling_mappings_is_not_a_duplicate() -> None:
    assert data("- {event: a}\n- {event: b}\n") == [{"event": "a"}, {"event": "b"}]


@pytest.mark.parametrize(
    ("text", "col", "tag"),
    [
        ("id: !!python/object/apply:os.system ['ls']\n", 5, "python/object/apply:os.system"),
        ("id: !foo x\n", 5, "!foo"),
        ("a: 1\nb: !!int '3'\n", 4, "int"),
        ("a: 1\nb: !!map {x: 1}\n", 4, "map"),
        ("a: 1\nb: !!binary aGVsbG8=\n", 4, "binary"),
        ("a: 1\nb: !!set {x}\n", 4, "set"),
    ],
)
def test_custom_tags_are_refused_at_the_tag(text: str, col: int, tag: str) -> None:
    finding = only(text)
    assert finding.rule == "yaml-tag"
    assert finding.line == text.count("\n")
    assert finding.col == col
    assert tag in finding.message


def test_python_tag_is_never_constructed(tmp_path: Any) -> None:
    marker = tmp_path / "pwned"
    finding = only(f"id: !!python/object/apply:os.system ['touch {marker}']\n")
    assert finding.rule == "yaml-tag"
    assert not marker.exists()


def test_anchor_is_refused_at_the_anchor() -> None:
    finding = only("a: 1\nbase: &b {x: 1}\nother: *b\n")
    assert (finding.rule, finding.line, finding.col) == ("yaml-anchor", 2, 7)
    assert "&b" in finding.message


def test_merge_key_with_alias_is_refused() -> None:
    finding = only("a: 1\nb:\n  <<: *x\n")
    assert (finding.rule, finding.line, finding.col) == ("yaml-anchor", 3, 7)
    assert "*x" in finding.message


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_rejected_fast_in_bounded_memory() -> None:
    bomb = billion_laughs().encode()
    tracemalloc.start()
    try:
        started = time.perf_counter()
        document, found = read_yaml("automations/x.yaml", bomb)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert document is None
    assert [(f.rule, f.line, f.col) for f in found] == [("yaml-anchor", 1, 5)]
    assert elapsed < 0.1
    assert peak < 50 * 1024 * 1024


def test_file_over_one_mebibyte_is_refused_before_parsing() -> None:
    content = b"a: '" + b"x" * MAX_BYTES + b"'\n"
    finding = only(content)
    assert (finding.rule, finding.line, finding.col) == ("file-too-large", 1, 1)
    assert f"{len(content):,}" in finding.message


def test_file_of_exactly_one_mebibyte_is_read() -> None:
    prefix = b"a: '"
    content = prefix + b"x" * (MAX_BYTES - len(prefix) - 2) + b"'\n"
    assert len(content) == MAX_BYTES
    document, found = read(content)
    assert found == []
    assert document is not None


def _timed_read(text: str) -> tuple[list[Finding], float]:
    started = time.perf_counter()
    _, found = read(text)
    return found, time.perf_counter() - started


@pytest.mark.parametrize(
    ("text", "col"),
    [
        pytest.param("[" * 10_000, 1),
        pytest.param("{" * 10_000, 1),
        ("[" * 999, MAX_DEPTH + 1),
        ("[a, " * 10_000, 4 * MAX_DEPTH + 1),
        ("{a: " * 10_000, 4 * MAX_DEPTH + 1),
        ("- " * 10_000 + "x\n", 2 * MAX_DEPTH + 1),
    ],
    ids=["flow-seq", "flow-map-open", "flow-seq-999", "flow-seq-items", "flow-map", "block-seq"],
)
def test_ten_thousand_levels_are_too_deep_not_a_recursion_error(text: str, col: int) -> None:
    found, elapsed = _timed_read(text)
    assert [(f.rule, f.line) for f in found] == [("yaml-too-deep", 1)]
    # Where libyaml stopped does not matter for the runs of brackets, only the rule.
    assert col == 1 or found[0].col == col
    assert elapsed < 0.1


def test_runs_of_brackets_are_refused_fast_whatever_the_rule() -> None:
    for text in ("[" * 10_000, "{" * 10_000, "[" * (MAX_BYTES - 1)):
        found, elapsed = _timed_read(text)
        assert len(found) == 1
        assert found[0].rule in {"yaml-too-deep", "yaml-syntax"}
        assert elapsed < 0.1


def test_deep_block_mappings_are_too_deep() -> None:
    # Block nesting costs indentation, so 1,000 levels is what fits under 1 MiB.
    text = "".join(" " * level + f"k{level}:\n" for level in range(1_000)) + " " * 1_000 + "x\n"
    assert len(text) < MAX_BYTES
    found, elapsed = _timed_read(text)
    assert [(f.rule, f.line) for f in found] == [("yaml-too-deep", MAX_DEPTH + 1)]
    assert elapsed < 0.1


def test_nesting_of_exactly_the_limit_is_read() -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    value = data(text)
    for _ in range(MAX_DEPTH - 1):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == []


def test_one_level_more_than_the_limit_is_too_deep() -> None:
    finding = only("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert (finding.rule, finding.col) == ("yaml-too-deep", MAX_DEPTH + 1)


def test_libyaml_parser_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    assert yaml.__with_libyaml__

    def python_parser(*_: object) -> None:
        raise AssertionError("the pure-Python parser was used although libyaml is present")

    monkeypatch.setattr(yaml, "SafeLoader", python_parser)
    document, found = read("a: 1\nb: [x, 2, true]\n")
    assert found == []
    assert document is not None
    assert document.data == {"a": 1, "b": ["x", 2, True]}


def test_invalid_utf8_is_refused() -> None:
    finding = only(b"id: a\nname: caf\xe9\n")
    assert (finding.rule, finding.line, finding.col) == ("file-encoding", 1, 1)
    assert "byte 15" in finding.message


def test_utf8_bom_is_accepted() -> None:
    document, found = read("\ufeffa: 1\n".encode())
    assert found == []
    assert document is not None and document.data == {"a": 1}


@pytest.mark.parametrize(
    ("text", "line", "col"),
    [
        ("a: 1\nb: [x\n", 3, 1),
        ("a: 1\nb: 'open\n", 3, 1),
        ("a: 1\n  b: 2\n", 2, 4),
        ("a: 1\nb:\n\t- x\n", 3, 1),
        ("a: 1\n- x\n", 2, 1),
    ],
)
def test_syntax_errors_carry_their_position(text: str, line: int, col: int) -> None:
    finding = only(text)
    assert (finding.rule, finding.line, finding.col) == ("yaml-syntax", line, col)
    assert finding.message


def test_second_document_is_refused_where_it_starts() -> None:
    finding = only("a: 1\n---\nb: 2\n")
    assert (finding.rule, finding.line, finding.col) == ("yaml-multiple-documents", 2, 1)


def test_explicit_single_document_is_fine() -> None:
    assert data("---\na: 1\n...\n") == {"a": 1}


def test_empty_file_is_an_empty_document() -> None:
    for text in ("", "\n", "# only a comment\n"):
        document, found = read(text)
        assert found == []
        assert document is not None and document.data is None


def test_complex_keys_are_refused() -> None:
    finding = only("a: 1\n? [x, y]\n: 2\n")
    assert (finding.rule, finding.line) == ("schema", 2)


# --- positions ------------------------------------------------------------------


def test_positions_of_values_and_keys() -> None:
    text = "id: a\ntrigger:\n  type: event\n  where:\n    all:\n      - {in_group: vip}\n"
    document, found = read(text)
    assert found == [] and document is not None
    assert document.position(("id",)) == (1, 5)
    assert document.position(("trigger", "type")) == (3, 9)
    assert document.position(("trigger", "type"), key=True) == (3, 3)
    assert document.position(("trigger", "where", "all", 0, "in_group")) == (6, 20)
    assert document.position(("trigger", "where", "all", 0, "in_group"), key=True) == (6, 10)


def test_position_of_an_unwritten_path_is_its_nearest_written_ancestor() -> None:
    document, _ = read("a: 1\nb:\n  c: 2\n")
    assert document is not None
    assert document.position(("b", "missing", "deeper")) == (3, 3)
    assert document.position(("nowhere",)) == (1, 1)


def test_columns_count_characters_not_bytes() -> None:
    finding = only("name: {a: \u00e9\U0001f600, b: no}\n")
    assert (finding.rule, finding.line, finding.col) == ("yaml-boolean", 1, 18)
