"""Rendering one email from an automation's templates (docs/file-format.md "Templates"):
sandboxed, strict and capped.

The send path builds an `EmailJob` (the texts and the variables of one email) and hands
it to the render workers of `runner.templating.renderpool`, which run `render_job` under hard CPU
and memory limits; called in any other process, `render_job` has only the sandbox's own
guards (runner.templating.sandbox). Every failure a template causes is a `RenderError` that fails
that one send and never the send loop.
"""

from __future__ import annotations

import html as html_escape
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.errors import PostwrightError
from runner.templating.sandbox import MAX_OUTPUT, RenderError, render_text

if TYPE_CHECKING:
    from runner.core.model import Automation
    from runner.core.records import Subscriber

__all__ = [
    "MAX_OUTPUT",
    "EmailJob",
    "RenderError",
    "RenderUnavailable",
    "RenderedEmail",
    "email_job",
    "render_job",
]

ONE_CLICK = "List-Unsubscribe=One-Click"
_LINE_BREAKS = re.compile(r"[\r\n]+\s*")
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


class RenderUnavailable(PostwrightError):
    """Rendering could not run, for a reason outside the template (a render worker was
    killed or could not start): the send is retried, not failed."""


@dataclass(frozen=True)
class RenderedEmail:
    """The parts of one rendered email, ready for a provider."""

    subject: str
    html: str | None
    text: str | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EmailJob:
    """Everything rendering one email needs: the template texts and the variables."""

    subject: str
    preheader: str | None
    html: str | None
    text: str | None
    values: dict[str, Any]
    unsubscribe_url: str


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


def email_job(
    model: Automation,
    template_files: Mapping[str, str],
    subscriber: Subscriber,
    event: Mapping[str, Any],
    unsubscribe_url: str,
    overrides: Mapping[str, Any] | None = None,
) -> EmailJob:
    """The job of rendering `model`'s email for one subscriber.

    `template_files` maps `html_file` / `text_file` to the text applied with the
    automation. RenderError when the email has no body.
    """
    email = model.email
    html = email.html if email.html is not None else template_files.get("html_file")
    text = email.text if email.text is not None else template_files.get("text_file")
    if html is None and text is None:
        raise RenderError("the email has no body (its template file was not applied)")
    values = variables(model, subscriber, event, unsubscribe_url, overrides)
    return EmailJob(email.subject, email.preheader, html, text, values, unsubscribe_url)


def render_job(job: EmailJob) -> RenderedEmail:
    """Render subject, preheader and bodies of one job (RenderError on any failure).

    The preheader becomes a hidden block at the top of the HTML body (inside `<body>`
    when there is one); an email without HTML has no preheader.
    """
    values = job.values
    subject = render_text("subject", job.subject, values, html=False)
    subject = _LINE_BREAKS.sub(" ", subject).strip()
    html = None if job.html is None else render_text("html", job.html, values, html=True)
    text = None if job.text is None else render_text("text", job.text, values, html=False)
    if html is not None and job.preheader is not None:
        preheader = render_text("preheader", job.preheader, values, html=False)
        html = _with_preheader(html, preheader)
    return RenderedEmail(subject, html, text, unsubscribe_headers(job.unsubscribe_url))


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
