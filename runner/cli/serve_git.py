"""`serve --git URL`: where the checkout lives and what the follower is given
(docs/git-follow.md).

Settings come from the command line first, then the `git:` section of the followed
repository's own postwright.yaml (read from the checkout: after the first clone, or at once
when the data folder holds one from an earlier run), then the defaults. Secrets come from the
environment variables the section names.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from runner.core.config import GitConfig
from runner.core.durations import parse_duration
from runner.core.layout import CONFIG_PATH
from runner.core.loader import load_config
from runner.core.settings import Settings
from runner.core.weblinks import web_url_from_remote
from runner.errors import UsageError
from runner.repo.git_remote import (
    Credentials,
    Remote,
    check_ref,
    check_url,
    checkout_commit,
    fetch,
    redact,
)
from runner.repo.worktree import open_repository

if TYPE_CHECKING:  # the follower is imported by `serve` only (the CLI starts fast)
    from runner.gitops.follow import Following

log = logging.getLogger("postwright.git")

USERNAME_VARIABLE = "POSTWRIGHT_GIT_USERNAME"


def add_git_arguments(serve: argparse.ArgumentParser) -> None:
    """The flags of `serve` that make it follow a remote repository."""
    group = serve.add_argument_group("following a remote repository (docs/git-follow.md)")
    group.add_argument("--git", metavar="URL", help="follow this repository's branch")
    group.add_argument("--ref", metavar="BRANCH", help="the branch to follow (default: main)")
    group.add_argument(
        "--interval", metavar="DURATION", help="time between fetches, e.g. 30s (default: 30s)"
    )
    group.add_argument(
        "--data",
        metavar="DIR",
        type=Path,
        help="the data folder: the checkout and the SQLite database (default: here)",
    )
    group.add_argument("--ssh-key", metavar="FILE", help="SSH private key for an ssh:// remote")
    group.add_argument("--known-hosts", metavar="FILE", help="known_hosts for the SSH remote")


def checkout_folder(data: Path) -> Path:
    """Where the runner keeps its work tree of the followed branch."""
    return data / ".postwright/git"


def data_folder(args: argparse.Namespace) -> Path:
    """The data folder of `serve --git` (refusing `--repo`: the runner keeps its own checkout)."""
    if args.repo is not None:
        raise UsageError("--repo and --git exclude each other: with --git, use --data DIR")
    data: Path = (args.data or Path.cwd()).resolve()
    data.mkdir(parents=True, exist_ok=True)
    return data


def first_clone(args: argparse.Namespace, data: Path, environ: Mapping[str, str]) -> Path:
    """The checkout, cloned now when the data folder holds none (its postwright.yaml is the
    runner's configuration); FetchError (exit 2) when that first clone fails."""
    checkout = checkout_folder(data)
    git = open_repository(checkout)
    if git is not None:
        with git:
            if git.head() is not None:
                return checkout
    remote = following(args, checkout, GitConfig(), environ).remote
    log.info("cloning %s (%s) into %s", redact(remote.url), remote.ref, checkout)
    checkout_commit(checkout, fetch(remote, checkout))
    return checkout


def git_config(checkout: Path) -> GitConfig:
    """The `git:` section of the checkout's postwright.yaml (the defaults when it has none or
    is invalid: starting up reports an invalid file on its own)."""
    path = checkout / CONFIG_PATH
    if not path.is_file():
        return GitConfig()
    loaded = load_config(CONFIG_PATH, path.read_bytes())
    return loaded.model.git if loaded.model is not None else GitConfig()


def following(
    args: argparse.Namespace, checkout: Path, config: GitConfig, environ: Mapping[str, str]
) -> Following:
    """What to follow: the flags over the file's `git:` section over the defaults."""
    from runner.gitops.follow import Following

    url = args.git or config.url
    if url is None:
        raise UsageError("--git needs the URL of the repository to follow")
    if config.url is not None and config.url != url:
        log.info("following --git %s (postwright.yaml names another URL)", redact(url))
    interval = float(config.interval)
    if args.interval is not None:
        seconds = parse_duration(args.interval)
        if not seconds:
            raise UsageError(f"--interval {args.interval!r}: a duration such as 30s or 5m")
        interval = float(seconds)
    token = (environ.get(config.token_env) or "").strip() or None
    ssh_key = args.ssh_key or config.ssh_key_file
    known_hosts = args.known_hosts or config.known_hosts_file
    credentials = Credentials(
        token=token,
        username=(environ.get(USERNAME_VARIABLE) or "").strip() or config.username,
        ssh_key=Path(ssh_key) if ssh_key else None,
        known_hosts=Path(known_hosts) if known_hosts else None,
    )
    ref = check_ref(args.ref or config.ref)
    remote = Remote(check_url(url), ref, credentials, float(config.timeout))
    secret = (environ.get(config.webhook_secret_env) or "").strip() or None
    return Following(remote, checkout, interval, secret)


def with_remote_web_url(settings: Settings, remote_url: str) -> Settings:
    """The dashboard's commit links read from the followed remote (an HTTPS URL on GitHub,
    GitLab or Codeberg) when `repository.web_url` does not set them."""
    if settings.repository_web_url is not None:
        return settings
    return dataclasses.replace(settings, repository_web_url=web_url_from_remote(remote_url))
