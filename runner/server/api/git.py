"""`POST /v1/git/webhook`: a signed push webhook makes `serve --git` fetch at once
(docs/git-follow.md "Webhooks").

No API key: GitHub and GitLab cannot send one; the signature (or GitLab's token) is the
authentication. The answer never waits for the fetch: 202 when a fetch is queued, 202 with
`ignored` and a reason for a push to another branch or another event, 401 when unsigned,
forged or no secret is configured.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runner.gitops.follow import GitFollower
from runner.gitops.git_webhook import WebhookRefused, delivery, verify
from runner.server.api.base import Handlers, unauthorised
from runner.server.api.models import RequestError

log = logging.getLogger("postwright.git")

MAX_WEBHOOK_BODY = 1024 * 1024  # a push of thousands of commits stays far below
WEBHOOK_OPERATION = {
    "post": {
        "summary": "A GitHub or GitLab push webhook: fetch the followed branch now",
        "responses": {
            "202": {"description": "fetch_queued, or ignored with a reason (another ref)"},
            "401": {"description": "unsigned, forged, or no webhook secret configured"},
            "413": {"description": "body over 1 MiB"},
            "422": {"description": "the body is not a JSON object"},
        },
    }
}


class GitApi(Handlers):
    """The webhook of a runner that follows a remote repository."""

    follower: GitFollower

    async def webhook(self, request: Request) -> Response:
        """POST /v1/git/webhook."""
        state = self.follower.state
        raw = await self._capped_body(request)
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            sender = verify(headers, raw, self.follower.following.webhook_secret)
        except WebhookRefused as refused:
            state.webhooks["refused"] += 1
            log.warning("git webhook refused: %s", refused)
            raise RequestError(401, unauthorised(str(refused))) from None
        try:
            found = delivery(sender, headers, raw)
        except ValueError as error:
            message = f"the body is not a push event: {error}"
            raise RequestError(422, {"error": "invalid_body", "message": message}) from None
        ignored = found.concerns(self.follower.remote.branch_ref)
        if ignored is not None:
            state.webhooks["ignored"] += 1
            return JSONResponse({"status": "ignored", "reason": ignored}, status_code=202)
        state.webhooks["accepted"] += 1
        self.follower.trigger()
        return JSONResponse({"status": "fetch_queued", "ref": found.ref}, status_code=202)

    async def _capped_body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_WEBHOOK_BODY:
            raise RequestError(413, _too_large())
        raw = await self.body(request)  # also capped (5 MiB) while it streams
        if len(raw) > MAX_WEBHOOK_BODY:
            raise RequestError(413, _too_large())
        return raw


def _too_large() -> dict[str, str]:
    message = f"webhook body over {MAX_WEBHOOK_BODY} bytes"
    return {"error": "too_large", "field": "(body)", "message": message}
