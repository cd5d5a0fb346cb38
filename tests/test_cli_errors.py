"""The one error handler at the CLI edge: every way a command ends maps to one exit code.

0 clean, 1 failing findings, 2 could not run (a PostwrightError, one line), 3 an internal
error (one line naming where the traceback went), 130 interrupted (Ctrl-C), 141 when the
reader of the output went away.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import checking
from runner.cli.main import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    TRACEBACK_DIR_VARIABLE,
    main,
)

VALID = (
    "id: welcome\nname: Welcome\nstatus: running\n"
    "trigger:\n  type: event\n  event: subscriber.added\n"
    'email:\n  from: "Shop <news@shop.postwright.dev>"\n  subject: "Hi"\n'
    '  text: "Hello {{ subscriber.email }}"\n'
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo" / "automations"
    folder.mkdir(parents=True)
    (folder / "welcome.yaml").write_text(VALID, encoding="utf-8")
    return tmp_path / "repo"


def validate(repo: Path, *extra: str) -> int:
    return main([*extra, "validate", "--repo", str(repo)], io.StringIO())


def crash(error: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the working-tree check raise `error` (a bug, or the user's Ctrl-C)."""

    def broken(*args: object) -> None:
        raise error

    monkeypatch.setattr(checking, "check_working_tree", broken)


def test_clean_exits_0(repo: Path) -> None:
    assert validate(repo) == 0


def test_failing_findings_exit_1(repo: Path) -> None:
    (repo / "automations" / "welcome.yaml").write_text("id: welcome\n", encoding="utf-8")
    assert validate(repo) == 1


def test_could_not_run_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert validate(tmp_path / "missing") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"postwright: error: --repo {tmp_path / 'missing'} is not a folder"
    ]


def test_an_internal_error_exits_3_naming_the_traceback_file(
    repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kept = tmp_path / "tracebacks"
    kept.mkdir()
    monkeypatch.setenv(TRACEBACK_DIR_VARIABLE, str(kept))
    crash(RuntimeError("boom\nsecond line"), monkeypatch)
    assert validate(repo) == EXIT_INTERNAL == 3
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("postwright: internal error: RuntimeError: boom (traceback in ")
    [written] = kept.iterdir()
    assert str(written) in lines[0]
    text = written.read_text(encoding="utf-8")
    assert text.startswith("Traceback (most recent call last):")
    assert "RuntimeError: boom\nsecond line" in text


def test_debug_prints_the_traceback_instead(
    repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(TRACEBACK_DIR_VARIABLE, str(tmp_path))
    crash(RuntimeError("boom"), monkeypatch)
    assert validate(repo, "--debug") == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err
    assert err.splitlines()[-1] == (
        "postwright: internal error: RuntimeError: boom (traceback above; please report it)"
    )
    assert not list(tmp_path.glob("postwright-traceback-*"))


def test_an_unwritable_traceback_folder_falls_back_to_stderr(
    repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(TRACEBACK_DIR_VARIABLE, str(tmp_path / "no" / "such" / "folder"))
    crash(ValueError("bad"), monkeypatch)
    assert validate(repo) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err
    assert err.splitlines()[-1].endswith("ValueError: bad (traceback above; please report it)")


def test_ctrl_c_exits_130(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crash(KeyboardInterrupt(), monkeypatch)
    assert validate(repo) == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "postwright: interrupted\n"


CLI = "import sys; from runner.cli.main import main; sys.exit(main())"


def test_a_reader_that_went_away_is_exit_141_without_a_traceback(tmp_path: Path) -> None:
    # `postwright schema | head -1`, made deterministic: the pipe's reader is gone before
    # the command writes its first byte.
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run(
            [sys.executable, "-c", CLI, "schema"],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={**os.environ, TRACEBACK_DIR_VARIABLE: str(tmp_path)},
        )
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (EXIT_BROKEN_PIPE, "")
    assert list(tmp_path.iterdir()) == []  # no traceback file either
