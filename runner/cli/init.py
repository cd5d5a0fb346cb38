"""`postwright init [DIR]`: scaffold a team repository of automations, ready to commit
(docs/team-repository.md).

The files come from the package data under `runner/cli/scaffold/` (a leading `dot-` in a
path stands for `.`, so the data holds no hidden files); the JSON Schema is the installed
one. The hooks and the Action are pinned to the Postwright this command runs from: the
repository and commit it was installed from, or `--postwright-repo` / `--postwright-rev`.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata, resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlparse

from runner.core.schema import schema_text
from runner.errors import UsageError
from runner.repo.worktree import open_repository, top_level

SCHEMA_PATH = "schema/automation.schema.json"
_GITHUB = re.compile(r"^(?:https://github\.com/|git@github\.com:)([\w.-]+/[\w.-]+?)(?:\.git)?/?$")
_SCP_LIKE = re.compile(r"^([\w.-]+@[\w.-]+):(.+)$")
# Written when the origin of this Postwright is unknown; `init` says what to replace.
UNKNOWN_REPO = "https://github.com/OWNER/postwright"
UNKNOWN_REV = "COMMIT_SHA"


@dataclass(frozen=True)
class Source:
    """Where the team's hooks and Action take Postwright from."""

    repo: str  # a git URL or a local path, as pre-commit's `repo:`
    rev: str  # a commit (or a tag the team created)
    known: bool = True

    @property
    def action(self) -> str:
        """The `uses:` of the workflow: `owner/name@rev` of a GitHub repository."""
        found = _GITHUB.match(self.repo)
        slug = found.group(1) if found else "OWNER/postwright"
        return f"{slug}@{self.rev}"

    @property
    def install(self) -> str:
        """A pip requirement installing this very Postwright."""
        scp = _SCP_LIKE.match(self.repo)  # git@host:path, which pip spells ssh://git@host/path
        if scp:
            url = f"ssh://{scp.group(1)}/{scp.group(2)}"
        elif "://" in self.repo:
            url = self.repo
        else:
            url = Path(self.repo).resolve().as_uri()
        return f"postwright @ git+{url}@{self.rev}"


def add_init_command(commands: Any, add_repo: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add init to the CLI's sub-commands."""
    del add_repo  # init makes a repository; it does not read one
    init = commands.add_parser("init", help="scaffold a team repository of automations")
    init.add_argument("dir", nargs="?", type=Path, default=Path("."), metavar="DIR")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")
    init.add_argument(
        "--postwright-repo",
        metavar="URL",
        help="git repository of Postwright for the hooks and the Action (default: installed)",
    )
    init.add_argument(
        "--postwright-rev", metavar="REV", help="the commit (or tag) to pin (default: installed)"
    )
    init.set_defaults(run=_init)


def _init(args: argparse.Namespace, out: TextIO) -> int:
    target: Path = args.dir
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} exists and is not a folder")
    source = _source(args.postwright_repo, args.postwright_rev)
    files = scaffold(source)
    existing = sorted(path for path in files if (target / path).exists())
    if existing and not args.force:
        raise UsageError(
            f"not overwriting existing files in {target} (use --force): " + ", ".join(existing)
        )
    for path, text in files.items():
        destination = target / path
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(text, encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot write {destination}: {error.strerror or error}") from None
    _report(target, files, source, out)
    return 0


def scaffold(source: Source) -> dict[str, str]:
    """Every file of a new team repository (path relative to its root -> text)."""
    values = {
        "__POSTWRIGHT_REPO__": source.repo,
        "__POSTWRIGHT_REV__": source.rev,
        "__POSTWRIGHT_ACTION__": source.action,
        "__POSTWRIGHT_INSTALL__": source.install,
    }
    files: dict[str, str] = {}
    for relative, item in _data_files(resources.files("runner.cli") / "scaffold", ""):
        text = item.read_text(encoding="utf-8")
        for marker, value in values.items():
            text = text.replace(marker, value)
        files[relative] = text
    files[SCHEMA_PATH] = schema_text()
    return dict(sorted(files.items()))


def _data_files(folder: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    found: list[tuple[str, Traversable]] = []
    for item in folder.iterdir():
        name = "." + item.name.removeprefix("dot-") if item.name.startswith("dot-") else item.name
        if item.is_dir():
            if name != "__pycache__":
                found.extend(_data_files(item, f"{prefix}{name}/"))
        else:
            found.append((f"{prefix}{name}", item))
    return found


def _source(repo: str | None, rev: str | None) -> Source:
    """The options, else the origin recorded at install (a VCS URL, or a local checkout)."""
    installed = _installed_source()
    if repo is None and rev is None and installed is not None:
        return installed
    known_repo = repo or (installed.repo if installed else None)
    # The installed commit is what the team runs: a fork or mirror given as --postwright-repo
    # holds it too.
    known_rev = rev or (installed.rev if installed else None)
    return Source(
        known_repo or UNKNOWN_REPO, known_rev or UNKNOWN_REV, bool(known_repo and known_rev)
    )


def _installed_source() -> Source | None:
    """Where pip installed Postwright from (PEP 610 `direct_url.json`), when it says."""
    # A source checkout on sys.path also shows its `postwright.egg-info`, which records
    # no origin: the installed distribution is the one with `direct_url.json`.
    records = (d.read_text("direct_url.json") for d in metadata.distributions(name="postwright"))
    recorded = next((text for text in records if text), None)
    if recorded is None:
        return None  # from an index: no repository to point at
    origin = json.loads(recorded)
    url = str(origin.get("url", ""))
    vcs = origin.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("commit_id"):  # pip pins a VCS install to a commit
        return Source(url, str(vcs["commit_id"]))
    if url.startswith("file://"):
        checkout = Path(unquote(urlparse(url).path))
        git = open_repository(checkout)
        if git is not None:
            with git:
                head = git.head()
            if head is not None and (checkout / ".pre-commit-hooks.yaml").is_file():
                return Source(str(checkout), head)
    return None


def _report(target: Path, files: dict[str, str], source: Source, out: TextIO) -> None:
    out.write(f"Created a Postwright team repository in {target}:\n")
    for path in files:
        out.write(f"  {path}\n")
    if not source.known:
        out.write(
            "\nWhere this Postwright comes from is unknown: replace "
            f"{UNKNOWN_REPO} and {UNKNOWN_REV} in .pre-commit-config.yaml, "
            ".github/workflows/postwright.yml and README.md (or run again with "
            "--postwright-repo URL --postwright-rev SHA --force).\n"
        )
    elif not _GITHUB.match(source.repo):
        out.write(
            f"\nThe hooks use {source.repo} at {source.rev}; the workflow needs the GitHub "
            "repository of Postwright: replace OWNER in .github/workflows/postwright.yml "
            "(or run again with --postwright-repo https://github.com/OWNER/postwright).\n"
        )
    steps = ["pre-commit install", "postwright validate", "git add -A", "git commit"]
    if top_level(target.resolve()) is None:
        steps.insert(0, "git init -b main")
    out.write(f"\nNext, in {target}: " + ", ".join(f"`{step}`" for step in steps) + ".\n")
