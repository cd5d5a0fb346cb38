"""The reporters over hand-built findings: text, JSON and GitHub annotations."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from runner.checking import report
from runner.core.findings import Finding, Severity

SHA = "0123456789abcdef0123456789abcdef01234567"

EDIT = Finding(
    "automations/welcome.yaml",
    7,
    3,
    "edit-not-allowed",
    "`email.subject` changed while running",
    help="set `status: paused` in an earlier commit, then edit",
    commit=SHA,
    automation="welcome",
)
SCHEMA = Finding("automations/b.yaml", 2, 1, "schema", "unknown key `foo`", help="remove it")
LINK = Finding(
    "templates/w.html",
    4,
    9,
    "link-placeholder",
    "links to example.com",
    severity=Severity.WARNING,
)
STALE = Finding(
    "automations/a.yaml",
    5,
    9,
    "stale-status",
    "written `scheduled`, effectively `running`",
    severity=Severity.WARNING,
    help="write `status: running`",
)


def rendered(found: list[Finding], fmt: str, summary: Path | None = None) -> str:
    out = io.StringIO()
    report.render(found, fmt, out, summary_path=summary)
    return out.getvalue()


def test_text_lines_help_and_commit() -> None:
    assert rendered([EDIT, LINK], "text") == (
        "automations/welcome.yaml:7:3: error[edit-not-allowed] `email.subject` changed while"
        " running [commit 0123456]\n"
        "  help: set `status: paused` in an earlier commit, then edit\n"
        "templates/w.html:4:9: warning[link-placeholder] links to example.com\n"
        "1 error, 1 warning\n"
    )


def test_text_without_findings() -> None:
    assert rendered([], "text") == "no findings\n"


def test_text_counts_plural() -> None:
    assert rendered([SCHEMA, EDIT], "text").endswith("2 errors, 0 warnings\n")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_colours_severity_only_on_a_terminal() -> None:
    out = _Tty()
    report.render([EDIT], "text", out)
    assert "\x1b[1;31merror\x1b[0m[edit-not-allowed]" in out.getvalue()
    assert "\x1b[" not in rendered([EDIT], "text")


def test_json_document_is_stable() -> None:
    text = rendered([EDIT, LINK], "json")
    assert text.endswith("}\n")
    assert text.startswith('{\n  "version": 1,')
    document = json.loads(text)
    assert document["summary"] == {"errors": 1, "warnings": 1}
    assert document["findings"][0] == {
        "path": "automations/welcome.yaml",
        "line": 7,
        "column": 3,
        "severity": "error",
        "rule": "edit-not-allowed",
        "message": "`email.subject` changed while running",
        "help": "set `status: paused` in an earlier commit, then edit",
        "commit": SHA,
        "automation": "welcome",
    }
    assert document["findings"][1]["commit"] is None
    assert document["findings"][1]["help"] is None


def test_json_keeps_the_given_order() -> None:
    document = json.loads(rendered([LINK, SCHEMA], "json"))
    assert [f["rule"] for f in document["findings"]] == ["link-placeholder", "schema"]


def test_json_empty() -> None:
    assert json.loads(rendered([], "json")) == {
        "version": 1,
        "findings": [],
        "summary": {"errors": 0, "warnings": 0},
    }


def test_github_annotation_format() -> None:
    assert report.annotation(SCHEMA) == (
        "::error file=automations/b.yaml,line=2,col=1,title=schema"
        "::unknown key `foo`%0Ahelp: remove it"
    )
    assert report.annotation(LINK).startswith("::warning file=templates/w.html,line=4,col=9,")


def test_github_escapes_messages_and_properties() -> None:
    odd = Finding("a,b:c%.yaml", 1, 1, "schema", "50% off\r\nnow: yes, really")
    line = report.annotation(odd)
    assert "file=a%2Cb%3Ac%25.yaml," in line
    assert line.endswith("::50%25 off%0D%0Anow: yes, really")
    assert "\n" not in line


def test_escape_rules() -> None:
    assert report.escape_data("a%b\rc\nd:e,f") == "a%25b%0Dc%0Ad:e,f"
    assert report.escape_property("a%b\rc\nd:e,f") == "a%25b%0Dc%0Ad%3Ae%2Cf"


def test_github_orders_errors_then_lifecycle_rules() -> None:
    ordered = report.github_order([LINK, SCHEMA, STALE, EDIT])
    assert [f.rule for f in ordered] == [
        "edit-not-allowed",
        "schema",
        "stale-status",
        "link-placeholder",
    ]


def test_github_output_lists_annotations_then_counts() -> None:
    lines = rendered([LINK, SCHEMA, EDIT], "github").splitlines()
    assert [line.split(" ")[0] for line in lines[:3]] == ["::error", "::error", "::warning"]
    assert "title=edit-not-allowed" in lines[0]
    assert "[commit 0123456]" in lines[0]
    assert lines[3] == "2 errors, 1 warning"


def test_github_summary_appends_full_table(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n", encoding="utf-8")
    many = [SCHEMA] * 12 + [EDIT]
    rendered(many, "github", summary)
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("# earlier step\n## Postwright validate\n\n13 errors, 0 warnings.\n")
    assert "| file:line | severity | rule | message | help | commit |" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == 13
    assert rows[0] == (
        "| `automations/welcome.yaml:7` | error | `edit-not-allowed` "
        "| `email.subject` changed while running "
        "| set `status: paused` in an earlier commit, then edit | `0123456` |"
    )


def test_github_summary_escapes_table_cells(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    piped = Finding("a.yaml", 1, 1, "schema", "a | b\nc")
    rendered([piped], "github", summary)
    assert "| a \\| b<br>c |  |  |" in summary.read_text(encoding="utf-8")


def test_github_summary_when_clean(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    assert rendered([], "github", summary) == "no findings\n"
    assert summary.read_text(encoding="utf-8") == "## Postwright validate\n\nNo findings.\n\n"


def test_github_without_summary_path_writes_no_file(tmp_path: Path) -> None:
    rendered([SCHEMA], "github")
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        rendered([], "xml")
