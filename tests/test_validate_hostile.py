"""`validate` on hostile repositories (plain folders and real git checkouts): every hostile
file is a finding for that file, fast, never a hang, a traceback or a secret read."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from runner.checking import tree as tree_module
from runner.cli.main import main
from runner.core.loader import load_automation
from tests.gitrepo import GitRepo

NOW = "2026-12-01T00:00:00Z"
FAST = 5.0  # seconds: bounds a whole validate run; a hang would exceed it by far
DEEP = "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"
NESTED_FOR = "{% for a in [1] %}" * 30 + "x" + "{% endfor %}" * 30


def automation(ident: str, body: str = '  text: "Hello {{ subscriber.email }}"\n') -> str:
    return (
        f"id: {ident}\n"
        "status: running\n"
        "trigger: {type: event, event: subscriber.added}\n"
        "email:\n"
        '  from: "Shop <news@shop.postwright.dev>"\n'
        "  subject: Hello\n"
        f"{body}"
    )


def with_template(ident: str, name: str) -> str:
    return automation(ident, f"  html_file: ../templates/{name}\n")


def write(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return root


def validate(root: Path, *extra: str) -> tuple[int, list[dict[str, Any]], float]:
    out = io.StringIO()
    started = time.monotonic()
    code = main(["validate", "--repo", str(root), "--now", NOW, "--format", "json", *extra], out)
    elapsed = time.monotonic() - started
    return code, json.loads(out.getvalue())["findings"], elapsed


def rules_by_path(found: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The error rules found per file (several automations on one event also warn)."""
    by_path: dict[str, set[str]] = {}
    for finding in (f for f in found if f["severity"] == "error"):
        by_path.setdefault(finding["path"], set()).add(finding["rule"])
    return by_path


def test_plain_folder_with_hostile_templates(tmp_path: Path) -> None:
    root = write(
        tmp_path / "repo",
        {
            "automations/env.yaml": with_template("env", "env.txt"),
            "automations/zero.yaml": with_template("zero", "zero.html"),
            "automations/pipe.yaml": with_template("pipe", "pipe.html"),
            "automations/ok.yaml": with_template("ok", "ok.html"),
            "templates/ok.html": "<p>{{ subscriber.email }}</p>",
        },
    )
    (root / "templates" / "env.txt").symlink_to("/proc/self/environ")
    (root / "templates" / "zero.html").symlink_to("/dev/zero")
    os.mkfifo(root / "templates" / "pipe.html")
    code, found, elapsed = validate(root)
    assert code == 1 and elapsed < FAST
    assert rules_by_path(found) == {
        "automations/env.yaml": {"file-outside-repo"},
        "automations/zero.yaml": {"file-outside-repo"},
        "automations/pipe.yaml": {"file-not-regular"},
    }
    env = next(f for f in found if f["path"] == "automations/env.yaml")
    assert (env["line"], env["automation"]) == (7, "env")  # at `html_file:`
    assert "POSTWRIGHT" not in json.dumps(found) and "PATH=" not in json.dumps(found)


def test_plain_folder_with_hostile_automation_files(tmp_path: Path) -> None:
    root = write(tmp_path / "repo", {"automations/ok.yaml": automation("ok")})
    outside = write(tmp_path / "outside", {"x.yaml": automation("x")})
    (root / "automations" / "x.yaml").symlink_to(outside / "x.yaml")
    (root / "automations" / "env.yaml").symlink_to("/proc/self/environ")
    os.mkfifo(root / "automations" / "pipe.yaml")
    (root / "automations" / "big.yaml").write_text("#" * (1024 * 1024 + 1), encoding="utf-8")
    code, found, elapsed = validate(root)
    assert code == 1 and elapsed < FAST
    assert rules_by_path(found) == {
        "automations/x.yaml": {"file-outside-repo"},
        "automations/env.yaml": {"file-outside-repo"},
        "automations/pipe.yaml": {"file-not-regular"},
        "automations/big.yaml": {"file-too-large"},
    }


def test_symlink_that_stays_inside_is_allowed(tmp_path: Path) -> None:
    root = write(
        tmp_path / "repo",
        {
            "automations/ok.yaml": with_template("ok", "alias.html"),
            "templates/real.html": "<p>{{ subscriber.email }}</p>",
        },
    )
    (root / "templates" / "alias.html").symlink_to("real.html")
    code, found, _ = validate(root)
    assert (code, rules_by_path(found)) == (0, {})


def test_git_checkout_with_committed_and_uncommitted_symlinks(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("automations/ok.yaml", automation("ok"))
    repo.write("automations/committed.yaml", with_template("committed", "committed.txt"))
    repo.write("templates/inside.html", "<p>{{ subscriber.email }}</p>")
    repo.write("automations/inside.yaml", with_template("inside", "link.html"))
    (repo.path / "templates" / "committed.txt").symlink_to("/proc/self/environ")
    (repo.path / "templates" / "link.html").symlink_to("inside.html")
    base = repo.commit("base")
    repo.write("automations/later.yaml", with_template("later", "uncommitted.txt"))
    (repo.path / "templates" / "uncommitted.txt").symlink_to("../../secret.txt")
    (tmp_path / "secret.txt").write_text("api key", encoding="utf-8")
    expected = {
        "automations/committed.yaml": {"file-outside-repo"},
        "automations/later.yaml": {"file-outside-repo"},
    }
    code, found, elapsed = validate(repo.path)
    assert (code, rules_by_path(found)) == (1, expected) and elapsed < FAST
    repo.write("automations/step.yaml", automation("step"))
    repo.commit("after base")
    code, found, elapsed = validate(repo.path, "--base", base)
    assert (code, rules_by_path(found)) == (1, expected) and elapsed < FAST
    assert "api key" not in json.dumps(found)


def test_templates_that_can_never_render_are_findings_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(
        tmp_path / "repo",
        {
            "automations/deep.yaml": with_template("deep", "deep.html"),
            "automations/loops.yaml": with_template("loops", "loops.html"),
            "automations/ok.yaml": with_template("ok", "ok.html"),
            "templates/deep.html": DEEP,
            "templates/loops.html": NESTED_FOR,
            "templates/ok.html": "{% for a in [1] %}" * 20 + "x" + "{% endfor %}" * 20,
        },
    )
    code, found, elapsed = validate(root)
    assert code == 1 and elapsed < FAST
    assert rules_by_path(found) == {
        "templates/deep.html": {"template-too-complex"},
        "templates/loops.html": {"template-too-complex"},
    }
    loops = next(f for f in found if f["path"] == "templates/loops.html")
    assert "too many statically nested blocks" in loops["message"]
    assert "Traceback" not in capsys.readouterr().err


def test_a_checker_crash_is_a_finding_for_that_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(
        tmp_path / "repo",
        {"automations/ok.yaml": automation("ok"), "automations/bad.yaml": automation("bad")},
    )
    real = load_automation

    def crashing(path: str, content: bytes) -> Any:
        if path.endswith("bad.yaml"):
            raise RecursionError("maximum recursion depth exceeded")
        return real(path, content)

    monkeypatch.setattr(tree_module, "load_automation", crashing)
    code, found, _ = validate(root)
    assert code == 1
    assert [(f["path"], f["rule"]) for f in found] == [("automations/bad.yaml", "check-crashed")]
    assert "RecursionError" in found[0]["message"]
    assert "Traceback" not in capsys.readouterr().err
