"""A fake of the two GitHub REST endpoints the Action's sticky comment uses:
`/repos/{owner}/{repo}/issues/{number}/comments` (GET, paged with a Link header; POST) and
`/repos/{owner}/{repo}/issues/comments/{id}` (PATCH). Token checked, calls recorded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class FakeGitHub:
    """Comments per issue number; `calls` is (method, path) in order."""

    token: str = "gh-token"
    per_page: int = 2  # small, so the client must follow the Link header
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    next_id: int = 1000

    def add(self, number: int, body: str) -> int:
        """An existing comment (another bot's, a person's)."""
        self.next_id += 1
        self.comments.setdefault(number, []).append({"id": self.next_id, "body": body})
        return self.next_id

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(
                    "/repos/{owner}/{repo}/issues/{number:int}/comments",
                    self._issue_comments,
                    methods=["GET", "POST"],
                ),
                Route(
                    "/repos/{owner}/{repo}/issues/comments/{comment:int}",
                    self._comment,
                    methods=["PATCH"],
                ),
            ]
        )

    def _authorized(self, request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return given in (f"token {self.token}", f"Bearer {self.token}")

    async def _issue_comments(self, request: Request) -> Response:
        self.calls.append((request.method, request.url.path))
        if not self._authorized(request):
            return JSONResponse({"message": "Bad credentials"}, 401)
        number = request.path_params["number"]
        listed = self.comments.setdefault(number, [])
        if request.method == "POST":
            body = json.loads(await request.body())
            self.next_id += 1
            comment = {"id": self.next_id, "body": body["body"]}
            listed.append(comment)
            return JSONResponse(comment, 201)
        page = int(request.query_params.get("page", "1"))
        start = (page - 1) * self.per_page
        headers = {}
        if start + self.per_page < len(listed):
            url = request.url.include_query_params(page=page + 1)
            headers["link"] = f'<{url}>; rel="next"'
        return JSONResponse(listed[start : start + self.per_page], headers=headers)

    async def _comment(self, request: Request) -> Response:
        self.calls.append((request.method, request.url.path))
        if not self._authorized(request):
            return JSONResponse({"message": "Bad credentials"}, 401)
        wanted = request.path_params["comment"]
        for listed in self.comments.values():
            for comment in listed:
                if comment["id"] == wanted:
                    comment["body"] = json.loads(await request.body())["body"]
                    return JSONResponse(comment)
        return JSONResponse({"message": "Not Found"}, 404)


# A stand-in for `gh api` (not installed here, and it only speaks https to hosts it knows):
# the same arguments the Action uses (--method, --paginate, --input, --jq), sent to the
# fake at $FAKE_GH_API with $GH_TOKEN, pages followed through the Link header.
GH_SHIM = r"""
import json, os, re, subprocess, sys, urllib.request

args = sys.argv[1:]
assert args and args[0] == "api", args
method, paginate, source, jq, endpoint = None, False, None, None, None
rest = iter(args[1:])
for arg in rest:
    if arg in ("--method", "-X"):
        method = next(rest)
    elif arg == "--paginate":
        paginate = True
    elif arg == "--input":
        source = next(rest)
    elif arg in ("--jq", "-q"):
        jq = next(rest)
    else:
        endpoint = arg
data = open(source, "rb").read() if source else None
method = method or ("POST" if data is not None else "GET")
url = os.environ["FAKE_GH_API"].rstrip("/") + "/" + endpoint.lstrip("/")
while url:
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", "token " + os.environ.get("GH_TOKEN", ""))
    request.add_header("Accept", "application/vnd.github+json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            text, link = answer.read().decode(), answer.headers.get("link") or ""
    except urllib.error.HTTPError as error:
        sys.stderr.write(f"gh: HTTP {error.code}: {error.read().decode()}\n")
        sys.exit(1)
    if jq:
        done = subprocess.run(["jq", "-r", jq], input=text, text=True, capture_output=True)
        assert done.returncode == 0, done.stderr
        sys.stdout.write(done.stdout)
    else:
        sys.stdout.write(text)
    found = re.search(r'<([^>]+)>; rel="next"', link)
    url = found.group(1) if paginate and found else None
"""
