"""Links from the dashboard to the repository's web pages: the configured `repository.web_url`
(docs/configuration.md), or one read from the HTTPS URL `serve --git` follows on a known
forge. Pure string work, no I/O."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Forges whose commit pages are `{repository}/commit/{sha}` (GitHub, GitLab, Gitea/Forgejo).
KNOWN_FORGES = frozenset({"github.com", "gitlab.com", "codeberg.org"})
_SHA = re.compile(r"[0-9a-f]{7,64}")


def check_web_url(text: str) -> str:
    """An http(s) URL of a repository's web page, without a trailing slash; ValueError
    naming what is wrong otherwise."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL such as https://github.com/acme/mail")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold credentials (it is shown in every dashboard link)")
    if parts.query or parts.fragment or any(c.isspace() for c in text.strip()):
        raise ValueError("must be a plain URL without query, fragment or spaces")
    return text.strip().rstrip("/")


def web_url_from_remote(remote: str) -> str | None:
    """The web page of a followed HTTPS remote on a known forge (`.git` and any credentials
    dropped), or None: other hosts' commit pages may live elsewhere."""
    parts = urlsplit(remote)
    host = (parts.hostname or "").lower()
    path = parts.path.rstrip("/").removesuffix(".git")
    if parts.scheme != "https" or host not in KNOWN_FORGES or path.count("/") < 2:
        return None
    if parts.query or parts.fragment or parts.port is not None:
        return None
    return f"https://{host}{path}"


def commit_url(web_url: str | None, sha: str | None) -> str | None:
    """`{web_url}/commit/{sha}` for a full or abbreviated hexadecimal commit id."""
    if web_url is None or sha is None or _SHA.fullmatch(sha) is None:
        return None
    return f"{web_url}/commit/{sha}"
