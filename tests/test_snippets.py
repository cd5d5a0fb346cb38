"""Every snippet of README.md, docs/*.md and the shipped READMEs works as written: YAML
parses; pre-commit configs name hooks that exist, pinned to a commit; workflows pass
actionlint and give the Action only inputs it has; automation and `postwright.yaml`
snippets load clean; `postwright ...` command lines name real sub-commands and options,
and the files they read exist."""

from __future__ import annotations

import argparse
import io
import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.cli.init import Source, scaffold
from runner.cli.main import _parser, main
from runner.core.findings import Severity
from runner.core.loader import load_automation, load_config

ROOT = Path(__file__).resolve().parent.parent
ACTIONLINT = ROOT / ".venv" / "bin" / "actionlint"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
# Postwright has no release tags: a pin is a full commit SHA, or the documented placeholder.
PIN = re.compile(r"^(?:[0-9a-f]{40}|COMMIT_SHA)$")
SCAFFOLD = scaffold(Source("https://github.com/OWNER/postwright", "COMMIT_SHA"))


@dataclass(frozen=True)
class Snippet:
    """One fenced block of a Markdown file."""

    where: str  # path:line
    lang: str
    text: str


def _documents() -> dict[str, str]:
    docs = [ROOT / "README.md", ROOT / "samples" / "README.md", *(ROOT / "docs").glob("*.md")]
    found = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in docs}
    found["(postwright init) README.md"] = SCAFFOLD["README.md"]
    return found


def _snippets(lang: str | None = None) -> list[Snippet]:
    found: list[Snippet] = []
    for name, text in sorted(_documents().items()):
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            if lang is None or match.group(1) == lang:
                found.append(Snippet(f"{name}:{line}", match.group(1), match.group(2)))
    return found


def _yaml_snippets() -> list[tuple[Snippet, Any]]:
    return [(s, yaml.safe_load(s.text)) for s in _snippets("yaml")]


def _ids(items: list[tuple[Snippet, Any]]) -> list[str]:
    return [snippet.where for snippet, _ in items]


def test_there_are_snippets_of_every_kind() -> None:
    kinds = {s.lang for s in _snippets()}
    assert {"yaml", "sh", "text"} <= kinds
    assert len(_pre_commit_configs()) >= 2 and len(_workflows()) >= 2


@pytest.mark.parametrize("snippet", _snippets("yaml"), ids=lambda s: s.where)
def test_yaml_snippets_parse(snippet: Snippet) -> None:
    assert yaml.safe_load(snippet.text) is not None


def test_no_snippet_or_comment_names_a_release_that_does_not_exist() -> None:
    texts = {snippet.where: snippet.text for snippet in _snippets()}
    for name in (".pre-commit-hooks.yaml", "action.yml"):
        texts[name] = (ROOT / name).read_text(encoding="utf-8")
    for name, text in texts.items():
        for bad in (r"rev:\s*v\d", r"/postwright@v\d", "<owner>"):
            assert not re.search(bad, text), f"{name}: {bad}"


# --- pre-commit -------------------------------------------------------------------


def _pre_commit_configs() -> list[tuple[Snippet, Any]]:
    configs = [(s, v) for s, v in _yaml_snippets() if isinstance(v, dict) and "repos" in v]
    configs.append((Snippet("(postwright init)", "yaml", ""), yaml.safe_load(_scaffold_config())))
    return configs


def _scaffold_config() -> str:
    return SCAFFOLD[".pre-commit-config.yaml"]


@pytest.mark.parametrize(
    ("snippet", "config"), _pre_commit_configs(), ids=_ids(_pre_commit_configs())
)
def test_pre_commit_snippets_name_existing_hooks_pinned_to_a_commit(
    snippet: Snippet, config: Any
) -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    known = {hook["id"] for hook in hooks}
    for repo in config["repos"]:
        assert repo["repo"].endswith("/postwright"), snippet.where
        assert PIN.match(str(repo["rev"])), f"{snippet.where}: rev {repo['rev']!r}"
        named = {hook["id"] for hook in repo["hooks"]}
        assert named and named <= known, f"{snippet.where}: {named - known}"


# --- workflows --------------------------------------------------------------------


def _workflows() -> list[tuple[Snippet, Any]]:
    flows = [(s, v) for s, v in _yaml_snippets() if isinstance(v, dict) and "jobs" in v]
    scaffolded = SCAFFOLD[".github/workflows/postwright.yml"]
    flows.append((Snippet("(postwright init)", "yaml", scaffolded), yaml.safe_load(scaffolded)))
    return flows


@pytest.mark.parametrize(("snippet", "workflow"), _workflows(), ids=_ids(_workflows()))
def test_workflow_snippets_pass_actionlint_and_use_real_inputs(
    snippet: Snippet, workflow: Any, tmp_path: Path
) -> None:
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "postwright.yml").write_text(snippet.text, encoding="utf-8")
    done = subprocess.run(
        [str(ACTIONLINT), str(folder / "postwright.yml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, f"{snippet.where}: {done.stdout}{done.stderr}"
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    ours = [s for s in steps if "/postwright@" in s.get("uses", "")]
    assert ours, snippet.where
    for step in ours:
        assert PIN.match(step["uses"].rsplit("@", 1)[1]), snippet.where
        assert set(step.get("with") or {}) <= set(action["inputs"]), snippet.where


# --- automations and postwright.yaml ----------------------------------------------


def _errors(findings: Any) -> list[str]:
    return [f"{f.rule}: {f.message}" for f in findings if f.severity is Severity.ERROR]


def test_automation_and_configuration_snippets_load_clean() -> None:
    checked = 0
    for snippet, value in _yaml_snippets():
        if not isinstance(value, dict):
            continue
        if "id" in value and "trigger" in value:
            stem = value["id"]
            loaded = load_automation(f"automations/{stem}.yaml", snippet.text.encode())
            assert _errors(loaded.findings) == [], snippet.where
            checked += 1
        elif "providers" in value or "timezone" in value:
            config = load_config("postwright.yaml", snippet.text.encode())
            assert _errors(config.findings) == [], snippet.where
            checked += 1
    assert checked >= 2


# --- command lines ----------------------------------------------------------------


def _command_lines(*langs: str, synopsis: bool) -> list[tuple[str, str]]:
    """`postwright ...` lines; a synopsis shows optional parts in brackets."""
    lines: list[tuple[str, str]] = []
    for snippet in (s for lang in langs for s in _snippets(lang)):
        joined = snippet.text.replace("\\\n", " ")
        for line in joined.splitlines():
            command = line.strip()
            command = command.removeprefix(".venv/bin/")
            if command.startswith("postwright ") and (" [" in command) == synopsis:
                lines.append((snippet.where, command))
    return lines


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser | None = action.choices.get(name)
            return found
    return None


@pytest.mark.parametrize(
    ("where", "command"), _command_lines("sh", synopsis=False), ids=lambda v: str(v)[:60]
)
def test_shell_commands_parse_and_read_files_that_exist(where: str, command: str) -> None:
    words = shlex.split(command, comments=True)
    # The command ends where the shell's operators (`>`, `|`, `&&`, `;`) begin.
    ends = [i for i, word in enumerate(words) if word and set(word) <= set("<>|&;")]
    argv = words[1 : ends[0] if ends else len(words)]
    try:
        args = _parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `{command}` is not a valid command line")
    for option in ("subscriber", "event"):
        path = getattr(args, option, None)
        if path is not None:
            relative = Path(path).as_posix()
            assert (ROOT / relative).is_file() or relative in SCAFFOLD, f"{where}: {path}"


@pytest.mark.parametrize(
    ("where", "command"), _command_lines("sh", "text", synopsis=True), ids=lambda v: str(v)[:60]
)
def test_command_synopses_name_real_commands_and_options(where: str, command: str) -> None:
    parser: argparse.ArgumentParser | None = _parser()
    words = command.split()[1:]
    while words and re.fullmatch(r"[a-z]+", words[0]) and parser is not None:
        found = _subparser(parser, words[0])
        if found is None:
            break
        parser, words = found, words[1:]
    assert parser is not None and parser.prog != "postwright", f"{where}: {command}"
    known = {option for action in parser._actions for option in action.option_strings}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", " ".join(words)))
    assert named <= known, f"{where}: {sorted(named - known)}"


def _render_commands() -> list[tuple[str, str]]:
    return [
        (w, c)
        for w, c in _command_lines("sh", synopsis=False)
        if c.startswith("postwright render ")
    ]


@pytest.mark.parametrize(("where", "command"), _render_commands(), ids=lambda v: str(v)[:60])
def test_render_commands_render(
    where: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run where the command is meant to run: this repository, or a scaffold of `init`."""
    argv = shlex.split(command, comments=True)[1:]
    files = [argv[i + 1] for i, word in enumerate(argv) if word in ("--subscriber", "--event")]
    here = all((ROOT / name).is_file() for name in files)
    if not here:
        for path, text in SCAFFOLD.items():
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text(text, encoding="utf-8")
    monkeypatch.chdir(ROOT if here else tmp_path)
    out = io.StringIO()
    assert main(argv, stdout=out) == 0, f"{where}: {command}"
    assert out.getvalue().startswith("Subject: "), out.getvalue()


# --- curl -------------------------------------------------------------------------


def _curl_commands() -> list[tuple[str, list[str]]]:
    """Every `curl` command of the shell snippets, as words (quoted bodies may span lines)."""
    found: list[tuple[str, list[str]]] = []
    for snippet in _snippets("sh"):
        pending = ""
        for line in snippet.text.replace("\\\n", " ").splitlines():
            pending = f"{pending}\n{line}" if pending else line
            try:
                words = shlex.split(pending, comments=True)
            except ValueError:
                continue  # an open quote: the body goes on on the next line
            pending = ""
            if words[:1] == ["curl"]:
                found.append((snippet.where, words))
    return found


def _route(method: str, path: str) -> bool:
    from runner.server.openapi import openapi_document

    for template, operations in openapi_document()["paths"].items():
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in operations:
            return True
    return False


@pytest.mark.parametrize(("where", "words"), _curl_commands(), ids=lambda v: str(v)[:60])
def test_curl_commands_call_documented_endpoints_with_json(where: str, words: list[str]) -> None:
    [url] = [w for w in words if re.search(r"(?:^https?://|^\.\.\.)", w)]
    path = re.sub(r"^(?:https?://[^/]+|\.\.\.)", "", url).split("?")[0]
    bodies = [words[i + 1] for i, word in enumerate(words) if word in ("-d", "--data")]
    method = words[words.index("-X") + 1] if "-X" in words else ("POST" if bodies else "GET")
    assert _route(method, path), f"{where}: {method} {path} is not an endpoint"
    for body in bodies:
        if "$" not in body:  # a shell variable is filled in by the snippet itself
            json.loads(body)
