"""The dashboard's links to the repository's commit pages (docs/dashboard.md): the
`repository.web_url` setting, the URL read from a followed remote, and the escaped link."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cli.serve_git import with_remote_web_url
from runner.cli.settings import SettingsError, load_settings
from runner.core.loader import load_config
from runner.core.settings import Settings
from runner.core.weblinks import check_web_url, commit_url, web_url_from_remote
from runner.server.ui.base import commit_link

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_a_web_url_is_http_or_https_without_a_trailing_slash() -> None:
    assert check_web_url("https://github.com/acme/mail/") == "https://github.com/acme/mail"
    assert check_web_url(" http://git.internal:3000/acme/mail ") == (
        "http://git.internal:3000/acme/mail"
    )
    for bad, reason in [
        ("ftp://github.com/acme/mail", "an http"),
        ("github.com/acme/mail", "an http"),
        ("https://", "an http"),
        ("https://user:token@github.com/acme/mail", "credentials"),
        ("https://github.com/acme/mail?tab=1", "without query"),
        ("https://github.com/acme/mail#top", "without query"),
        ("https://github.com/acme/my mail", "spaces"),
    ]:
        with pytest.raises(ValueError, match=reason):
            check_web_url(bad)


def test_a_bad_web_url_is_a_finding_naming_the_line() -> None:
    loaded = load_config("postwright.yaml", b"timezone: UTC\nrepository:\n  web_url: ftp://x\n")
    assert loaded.model is None
    (finding,) = loaded.findings
    assert (finding.line, finding.rule) == (3, "schema")
    assert finding.message == (
        "`repository.web_url`: must be an http(s) URL such as https://github.com/acme/mail"
    )
    unknown = load_config("postwright.yaml", b"repository:\n  url: https://x.example\n")
    assert [f.message for f in unknown.findings] == ["unknown key `repository.url`"]


def test_settings_carry_the_web_url(tmp_path: Path) -> None:
    assert load_settings(tmp_path, {}).repository_web_url is None
    (tmp_path / "postwright.yaml").write_text("repository:\n  web_url: https://x.example/a/b/\n")
    assert load_settings(tmp_path, {}).repository_web_url == "https://x.example/a/b"
    (tmp_path / "postwright.yaml").write_text("repository:\n  web_url: x.example\n")
    with pytest.raises(SettingsError, match=r"postwright.yaml:2:.*repository.web_url"):
        load_settings(tmp_path, {})


def test_a_followed_https_remote_on_a_known_forge_gives_the_web_url() -> None:
    assert web_url_from_remote("https://github.com/acme/mail.git") == "https://github.com/acme/mail"
    assert web_url_from_remote("https://x-access-token:t0k@GitHub.com/acme/mail/") == (
        "https://github.com/acme/mail"
    )
    assert web_url_from_remote("https://gitlab.com/acme/team/mail.git") == (
        "https://gitlab.com/acme/team/mail"
    )
    for other in [
        "git@github.com:acme/mail.git",  # SSH
        "ssh://git@github.com/acme/mail.git",
        "http://github.com/acme/mail.git",
        "https://git.internal/acme/mail.git",  # its web pages may live elsewhere
        "https://github.com/acme",  # no repository
        "https://github.com:8443/acme/mail.git",
        "/srv/git/mail.git",
    ]:
        assert web_url_from_remote(other) is None, other


def test_the_setting_wins_over_the_followed_remote() -> None:
    remote = "https://github.com/acme/mail.git"
    derived = with_remote_web_url(Settings(repo=Path(".")), remote)
    assert derived.repository_web_url == "https://github.com/acme/mail"
    configured = Settings(repo=Path("."), repository_web_url="https://git.acme.example/mail")
    assert with_remote_web_url(configured, remote) is configured
    unknown = with_remote_web_url(Settings(repo=Path(".")), "https://git.internal/a/b.git")
    assert unknown.repository_web_url is None


def test_commit_urls_only_for_commit_ids() -> None:
    assert commit_url("https://x.example/a", SHA) == f"https://x.example/a/commit/{SHA}"
    assert commit_url("https://x.example/a", "abc1234") == "https://x.example/a/commit/abc1234"
    assert commit_url(None, SHA) is None
    assert commit_url("https://x.example/a", None) is None
    assert commit_url("https://x.example/a", "../../evil") is None
    assert commit_url("https://x.example/a", "HEAD") is None


def test_the_commit_link_is_escaped_and_keeps_no_opener() -> None:
    assert commit_link(None, None) == "\u2013"
    assert commit_link(None, SHA) == "<code>0123456</code>"
    assert commit_link("https://x.example/a", "<b>oops</b>") == "<code>&lt;b&gt;oops</code>"
    link = commit_link('https://x.example/a?"><script>', SHA)
    assert link == (
        '<a class="commit" href="https://x.example/a?&#34;&gt;&lt;script&gt;/commit/'
        f'{SHA}" rel="noopener noreferrer" title="Commit {SHA} in the repository">'
        "<code>0123456</code></a>"
    )
