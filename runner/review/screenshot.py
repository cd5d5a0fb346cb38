"""PNG screenshots of rendered HTML by a headless Chromium that Playwright drives.

The browser is the system's (Debian's `chromium`, or the path in $POSTWRIGHT_CHROMIUM):
Playwright's own browser downloads are never used. JavaScript is off and every request
other than the page itself is refused, so an email's remote images and fonts are never
fetched. Where no browser (or no Playwright) is installed, `Screenshots.unavailable` says
why and no screenshot is taken.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

BROWSER_ENV = "POSTWRIGHT_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 600  # the usual width an email is designed for
HEIGHT = 800  # the first view; the screenshot covers the whole page
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
_TIMEOUT_MS = 15_000


def find_browser(environ: Mapping[str, str] | None = None) -> str | None:
    """The Chromium to drive: $POSTWRIGHT_CHROMIUM, else the first candidate on PATH."""
    environ = os.environ if environ is None else environ
    given = environ.get(BROWSER_ENV)
    if given:
        return given if Path(given).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name, path=environ.get("PATH"))
        if found:
            return found
    return None


class Screenshots:
    """One browser for many screenshots; use as a context manager."""

    def __init__(self, executable: str | None = None, width: int = WIDTH) -> None:
        self.width = width
        self.executable = executable or find_browser()
        self.unavailable: str | None = None
        self._playwright: Any = None
        self._browser: Any = None

    def __enter__(self) -> Screenshots:
        if self.executable is None:
            self.unavailable = (
                "no Chromium found (install Debian's `chromium`, or set "
                f"${BROWSER_ENV} to a Chromium or Chrome binary): screenshots skipped"
            )
            return self
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            self.unavailable = (
                "the `playwright` package is not installed "
                "(pip install 'postwright[preview]'): screenshots skipped"
            )
            return self
        try:
            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable, args=ARGS, timeout=_TIMEOUT_MS
            )
        except Exception as error:  # playwright raises its own Error types for a bad browser
            self._close()
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            self.unavailable = f"{self.executable} did not start ({first}): screenshots skipped"
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._close()

    def take(self, html: str, target: Path) -> None:
        """Write a full-page PNG of `html` at the email width to `target`."""
        if self._browser is None:
            raise RuntimeError(self.unavailable or "the browser is not started")
        context = self._browser.new_context(
            viewport={"width": self.width, "height": HEIGHT}, java_script_enabled=False
        )
        try:
            page = context.new_page()
            page.route("**/*", _only_the_page)
            page.set_content(html, wait_until="load", timeout=_TIMEOUT_MS)
            page.screenshot(path=str(target), full_page=True, timeout=_TIMEOUT_MS)
        finally:
            context.close()

    def _close(self) -> None:
        browser, self._browser = self._browser, None
        driver, self._playwright = self._playwright, None
        if browser is not None:
            browser.close()
        if driver is not None:
            driver.stop()


def _only_the_page(route: Any) -> None:
    """Refuse every load but inline data: an email's remote content is never fetched."""
    url = route.request.url
    if url.startswith(("data:", "about:")):
        route.continue_()
    else:
        route.abort()
