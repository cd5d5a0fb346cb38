"""Rendering one email from an automation's templates (SPEC 1): sandboxed, strict and capped.

Templates compile once per text in the sandboxed environment of `runner.templates`
(StrictUndefined; autoescape for HTML only). A render is bounded: output over 1 MiB or
more than 2 s of work fails it, and so does any error a template raises, as a `RenderError`
that fails that one send and never the send loop.
"""

from __future__ import annotations

import contextvars
import html as html_escape
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import Template
from jinja2.sandbox import MAX_RANGE, SandboxedEnvironment

from runner import templates
from runner.errors import PostwrightError
from runner.model import Automation
from runner.store.records import Subscriber

MAX_OUTPUT = 1024 * 1024  # characters of one rendered part
MAX_SECONDS = 2.0
ONE_CLICK = "List-Unsubscribe=One-Click"
_LINE_BREAKS = re.compile(r"[\r\n]+\s*")
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
# The deadline of the render in progress, read by the capped `range` (a context variable,
# so renders in several threads or tasks keep their own).
_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("render_deadline")


class RenderError(PostwrightError):
    """A template could not be rendered for one send (the send fails with this message)."""


@dataclass(frozen=True)
class RenderedEmail:
    """The parts of one rendered email, ready for a provider."""

    subject: str
    html: str | None
    text: str | None
    headers: dict[str, str] = field(default_factory=dict)


def unsubscribe_headers(url: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe headers for `url`."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK}


def variables(
    model: Automation,
    subscriber: Subscriber,
    event: Mapping[str, Any],
    unsubscribe_url: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The template variables: api `overrides` are overlaid on the subscriber's fields."""
    return {
        "subscriber": {
            "email": subscriber.email,
            "fields": {**subscriber.fields, **(overrides or {})},
            "groups": sorted(subscriber.groups),
        },
        "event": dict(event),
        # An automation without a name is called by its id, so `automation.name` never
        # renders "None".
        "automation": {"id": model.id, "name": model.name or model.id},
        "unsubscribe_url": unsubscribe_url,
    }


def render_email(
    model: Automation,
    template_files: Mapping[str, str],
    subscriber: Subscriber,
    event: Mapping[str, Any],
    unsubscribe_url: str,
    overrides: Mapping[str, Any] | None = None,
) -> RenderedEmail:
    """Render subject, preheader and bodies of `model` for one subscriber.

    `template_files` maps `html_file` / `text_file` to the text applied with the
    automation. The preheader becomes a hidden block at the top of the HTML body
    (inside `<body>` when there is one); an email without HTML has no preheader.
    """
    email = model.email
    values = variables(model, subscriber, event, unsubscribe_url, overrides)
    html_body = email.html if email.html is not None else template_files.get("html_file")
    text_body = email.text if email.text is not None else template_files.get("text_file")
    subject = _LINE_BREAKS.sub(" ", _render("subject", email.subject, values, html=False)).strip()
    html = None if html_body is None else _render("html", html_body, values, html=True)
    text = None if text_body is None else _render("text", text_body, values, html=False)
    if html is not None and email.preheader is not None:
        preheader = _render("preheader", email.preheader, values, html=False)
        html = _with_preheader(html, preheader)
    if html is None and text is None:
        raise RenderError("the email has no body (its template file was not applied)")
    return RenderedEmail(subject, html, text, unsubscribe_headers(unsubscribe_url))


def _with_preheader(html: str, preheader: str) -> str:
    if not preheader.strip():
        return html
    hidden = (
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
        f"{html_escape.escape(preheader)}</div>"
    )
    body = _BODY_TAG.search(html)
    if body is None:
        return hidden + html
    return html[: body.end()] + hidden + html[body.end() :]


def _render(part: str, text: str, values: Mapping[str, Any], *, html: bool) -> str:
    """Render one part within the caps; every failure becomes a RenderError naming `part`."""
    started = time.perf_counter()
    token = _DEADLINE.set(started + MAX_SECONDS)
    try:
        template = _compile(text, html)
        size = 0
        chunks: list[str] = []
        for chunk in template.generate(values):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise RenderError(f"{part}: output is larger than {MAX_OUTPUT} characters")
            chunks.append(chunk)
            _check_deadline()
    except RenderError as error:
        if str(error).startswith(f"{part}:"):
            raise
        raise RenderError(f"{part}: {error}") from None
    except Exception as error:  # a template is user code: any error fails this send only
        raise RenderError(f"{part}: {type(error).__name__}: {error}") from None
    finally:
        _DEADLINE.reset(token)
    if time.perf_counter() - started > MAX_SECONDS:
        raise RenderError(f"{part}: rendering took longer than {MAX_SECONDS:g} s")
    return "".join(chunks)


def _check_deadline() -> None:
    deadline = _DEADLINE.get(None)
    if deadline is not None and time.perf_counter() > deadline:
        raise RenderError(f"rendering took longer than {MAX_SECONDS:g} s")


def _capped_range(*args: int) -> Iterator[int]:
    """The sandbox's `range` (at most MAX_RANGE items) that also stops at the deadline."""
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise OverflowError(f"range too big, at most {MAX_RANGE} items are allowed")
    for index, number in enumerate(numbers):
        if index % 1024 == 0:
            _check_deadline()
        yield number


def _guarded_binop(
    env: SandboxedEnvironment, context: Any, operator: str, left: Any, right: Any
) -> Any:
    """`*` and `**` refuse results that would break the output cap before computing them."""
    if operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if (
                isinstance(sequence, str | list | tuple)
                and isinstance(count, int)
                and len(sequence) * count > MAX_OUTPUT
            ):
                raise RenderError(f"a repeated value would be larger than {MAX_OUTPUT} items")
    if operator == "**" and isinstance(right, int) and abs(right) > 1024:
        raise RenderError("an exponent larger than 1024 is not allowed")
    return env.binop_table[operator](left, right)


def _environment(*, html: bool) -> SandboxedEnvironment:
    env = templates.environment(html=html)
    env.globals["range"] = _capped_range
    # Intercepted operators compile to `environment.call_binop(...)`: guard the ones that
    # can build a huge value in a single step.
    env.intercepted_binops = frozenset({"*", "**"})
    setattr(env, "call_binop", lambda context, op, a, b: _guarded_binop(env, context, op, a, b))  # noqa: B010
    return env


_ENVIRONMENTS = {True: _environment(html=True), False: _environment(html=False)}


@lru_cache(maxsize=4096)
def _compile(text: str, html: bool) -> Template:
    """A compiled template, cached by text (a body shared by many sends compiles once)."""
    return _ENVIRONMENTS[html].from_string(text)
