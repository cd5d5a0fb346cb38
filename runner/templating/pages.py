"""Jinja for the runner's own web pages (the dashboard): files shipped in a package, every
value autoescaped. Never for users' email templates, which run in the sandbox (sandbox.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape


class PageTemplates:
    """The HTML templates of one package folder."""

    def __init__(
        self, package: str, folder: str, filters: Mapping[str, Callable[..., Any]]
    ) -> None:
        self._env = Environment(
            loader=PackageLoader(package, folder),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(filters)

    def render(self, name: str, **context: Any) -> str:
        """The page `name` rendered with `context` (escaped unless marked safe)."""
        return self._env.get_template(name).render(**context)
