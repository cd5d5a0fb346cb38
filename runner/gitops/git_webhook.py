"""Push webhooks of GitHub and GitLab: who sent them, and whether they concern the followed
branch (pure; docs/git-follow.md "Webhooks").

GitHub signs the body with HMAC-SHA256 of the shared secret (`X-Hub-Signature-256:
sha256=<hex>`); GitLab sends the secret itself (`X-Gitlab-Token`). Both are compared in
constant time. A request with neither, or a wrong one, is refused before its body is parsed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

from runner.errors import PostwrightError

GITHUB_SIGNATURE = "x-hub-signature-256"
GITHUB_EVENT = "x-github-event"
GITLAB_TOKEN = "x-gitlab-token"
GITLAB_EVENT = "x-gitlab-event"
PUSH_EVENTS = frozenset({"push", "Push Hook"})


class WebhookRefused(PostwrightError):
    """Unsigned, forged, or no secret configured (answered 401)."""


@dataclass(frozen=True)
class Delivery:
    """A verified webhook: its sender, event and pushed ref (None when it names none)."""

    sender: str  # github | gitlab
    event: str
    ref: str | None

    def concerns(self, branch_ref: str) -> str | None:
        """None when this delivery should trigger a fetch of `branch_ref`, else why not."""
        if self.event not in PUSH_EVENTS:
            return f"event {self.event!r} is not a push"
        if self.ref != branch_ref:
            return f"push to {self.ref!r}, not to the followed {branch_ref!r}"
        return None


def verify(headers: Mapping[str, str], body: bytes, secret: str | None) -> str:
    """The sender (`github` or `gitlab`) of a correctly signed request; WebhookRefused else.
    `headers` has lower-case names."""
    if not secret:
        raise WebhookRefused("no webhook secret is configured on this runner")
    signature = headers.get(GITHUB_SIGNATURE)
    if signature is not None:
        expected = github_signature(secret, body)
        if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
            raise WebhookRefused(f"{GITHUB_SIGNATURE} does not match the body")
        return "github"
    token = headers.get(GITLAB_TOKEN)
    if token is not None:
        if not hmac.compare_digest(secret.encode(), token.encode()):
            raise WebhookRefused(f"{GITLAB_TOKEN} is wrong")
        return "gitlab"
    raise WebhookRefused(f"unsigned: neither {GITHUB_SIGNATURE} nor {GITLAB_TOKEN} is present")


def delivery(sender: str, headers: Mapping[str, str], body: bytes) -> Delivery:
    """What a verified request announces; ValueError when its body is not a JSON object."""
    event = headers.get(GITHUB_EVENT if sender == "github" else GITLAB_EVENT, "")
    if event == "ping":  # GitHub's test delivery has no ref
        return Delivery(sender, event, None)
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("the body is not a JSON object")
    ref = document.get("ref")
    return Delivery(sender, event, ref if isinstance(ref, str) else None)


def github_signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub would send (for tests and tools)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
