"""The HTTP client of `--against URL`: the few read endpoints of a running Postwright it needs,
over one connection, with errors that name the URL and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from runner.errors import PostwrightError, UsageError

API_KEY_ENV = "POSTWRIGHT_API_KEY"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
PAGE = 1000  # the API's largest `limit`


class RunnerUnavailable(PostwrightError):
    """The URL given to --against cannot be read as a Postwright runner (exit 2)."""


class RunnerClient:
    """The few read endpoints --against needs, with one connection and clear errors."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = normalise_url(url)
        headers = {"accept": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=TIMEOUT, transport=transport
        )

    def __enter__(self) -> RunnerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._http.close()

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET a JSON object, or raise RunnerUnavailable naming the URL and the reason."""
        where = f"{self.url}{path}"
        try:
            response = self._http.get(path, params=dict(params or {}))
        except httpx.TimeoutException:
            raise RunnerUnavailable(f"{where}: no answer within {TIMEOUT.read:g} s") from None
        except httpx.HTTPError as error:
            raise RunnerUnavailable(f"cannot reach {where}: {error}") from None
        if response.status_code == 401:
            raise RunnerUnavailable(
                f"{where} answered 401: set {API_KEY_ENV} to an API key of that runner"
            )
        if response.status_code != 200:
            raise RunnerUnavailable(
                f"{where} answered {response.status_code}: {_excerpt(response)}"
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise RunnerUnavailable(f"{where} did not answer with JSON: is it a Postwright runner?")
        return body

    def automations(self) -> list[dict[str, Any]]:
        """GET /v1/automations: one summary per applied automation."""
        body = self.get("/v1/automations")
        rows = body.get("automations")
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and isinstance(r.get("id"), str) for r in rows
        ):
            raise RunnerUnavailable(
                f"{self.url}/v1/automations has no automation list: is it a Postwright runner?"
            )
        return rows

    def automation(self, ident: str) -> dict[str, Any]:
        """GET /v1/automations/{id}."""
        return self.get(f"/v1/automations/{quote(ident, safe='')}")

    def pending(self, ident: str) -> list[dict[str, Any]]:
        """The automation's sends in status `pending`, by due time (at most one page)."""
        body = self.get(
            f"/v1/automations/{quote(ident, safe='')}/pending",
            {"status": "pending", "limit": str(PAGE)},
        )
        sends = body.get("pending")
        return [s for s in sends if isinstance(s, dict)] if isinstance(sends, list) else []


def normalise_url(url: str) -> str:
    """The runner's base URL without a trailing slash; UsageError unless http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--against {url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:200] or response.reason_phrase
