"""Static checks of the email templates of an automation (docs/rules.md, `template-*`): the
analysis of each subject, preheader and body (analysis.py) placed in the automation file or
the template file, and the event data its trigger supplies; pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from runner.core import findings
from runner.core.findings import Finding
from runner.core.loader import Loaded
from runner.core.model import (
    ApiTrigger,
    Automation,
    DateTrigger,
    EmailAction,
    EmailTrigger,
    EventTrigger,
    ScheduleTrigger,
)
from runner.templating.analysis import Analysis, Problem, analyse, link_problems

INLINE_KEYS = ("subject", "preheader", "html", "text")
FILE_KEYS = {"html_file": "html", "text_file": "text"}


# --- what each trigger supplies ------------------------------------------------------


def supplied_event_data(model: Automation) -> frozenset[str] | None:
    """The `event.data` keys the trigger supplies; None when it supplies arbitrary data."""
    trigger = model.trigger
    if isinstance(trigger, EventTrigger | ApiTrigger):
        return None
    if isinstance(trigger, EmailTrigger):
        keys = {"automation", "message_id", "sent_at"}
        if trigger.action in (EmailAction.CLICKED, EmailAction.NOT_CLICKED):
            keys.add("link")
        return frozenset(keys)
    if isinstance(trigger, DateTrigger):
        return frozenset({"field", "date"})
    assert isinstance(trigger, ScheduleTrigger)
    return frozenset({"tick"})


def _event_data_problems(model: Automation, analysis: Analysis) -> Iterator[Problem]:
    supplied = supplied_event_data(model)
    kind = model.trigger.type
    for read, line in analysis.event_reads:
        if read == "occurred_at":
            if not isinstance(model.trigger, EventTrigger):
                message = f"the event of a `{kind}` trigger has no `occurred_at`"
                yield Problem("template-event-data", line, 1, message)
        elif supplied is not None and read[len("data.") :] not in supplied:
            yield Problem(
                "template-event-data",
                line,
                1,
                f"`event.{read}` is never set by this `{kind}` trigger "
                f"(it supplies {', '.join(sorted(supplied))})",
            )


# --- findings for one automation ----------------------------------------------------


def template_findings(
    loaded: Loaded[Automation],
    paths: Mapping[str, str | None],
    texts: Mapping[str, str | None],
    refused: Mapping[str, tuple[str, str]] | None = None,
    *,
    model: Automation | None = None,
) -> list[Finding]:
    """Findings about the subject, preheader and bodies of an automation.

    `model` is the loaded model, or for an invalid file the model of its parts
    that parsed (`Loaded.partial`): keys the loader dropped are not checked.

    `paths` maps `html_file` / `text_file` to the resolved repository path
    (None when the name leaves the repository); `texts` maps the same keys to
    the file's text (None when the file does not exist or is refused);
    `refused` maps them to the rule and message of a file that is not read.
    """
    model = model or loaded.model
    if model is None:
        return []
    found: list[Finding] = []
    ident = model.id if loaded.readable("id") else None
    email = model.email
    for key in INLINE_KEYS:
        text = getattr(email, key)
        if text is not None and loaded.readable("email", key):
            place = _InlinePlace(loaded, key, text)
            for problem in _problems(model, text, html=key == "html"):
                line, col = place.map(problem.line, problem.col)
                found.append(_finding(problem, loaded.path, line, col, ident))
    for key, body in FILE_KEYS.items():
        if getattr(email, key) is None or not loaded.readable("email", key):
            continue
        refusal = (refused or {}).get(key)
        if refusal is not None:
            line, col = loaded.position("email", key)
            rule, message = refusal
            found.append(findings.make(rule, loaded.path, message, line, col, automation=ident))
            continue
        found.extend(_file_findings(loaded, model, key, body, paths.get(key), texts.get(key)))
    return found


def _problems(model: Automation, text: str, *, html: bool) -> list[Problem]:
    analysis = analyse(text)
    problems = [*analysis.problems, *_event_data_problems(model, analysis)]
    if html:
        problems.extend(link_problems(text))
    return problems


def _file_findings(
    loaded: Loaded[Automation],
    model: Automation,
    key: str,
    body: str,
    path: str | None,
    text: str | None,
) -> list[Finding]:
    named = getattr(model.email, key)
    ident = model.id if loaded.readable("id") else None
    line, col = loaded.position("email", key)
    if path is None:
        message = f"`{named}` leaves the repository"
        return [
            findings.make(
                "template-outside-repo", loaded.path, message, line, col, automation=ident
            )
        ]
    if text is None:
        message = f"template file `{path}` does not exist"
        return [
            findings.make("template-missing", loaded.path, message, line, col, automation=ident)
        ]
    return [
        _finding(problem, path, problem.line, problem.col, ident)
        for problem in _problems(model, text, html=body == "html")
    ]


def _finding(problem: Problem, path: str, line: int, col: int, automation: str | None) -> Finding:
    return findings.make(problem.rule, path, problem.message, line, col, automation=automation)


class _InlinePlace:
    """Maps a position inside an inline body to the automation file.

    The document records where a value starts, not its style. A value holding a
    newline is taken to be a block scalar (`|` or `>`), whose content starts on the
    line after its key, indented two columns past the key (the usual style); any
    other value is on its key's line.
    """

    def __init__(self, loaded: Loaded[Automation], key: str, text: str) -> None:
        self.value = loaded.position("email", key)
        self.key = loaded.position("email", key, key=True)
        self.block = "\n" in text

    def map(self, line: int, col: int) -> tuple[int, int]:
        if self.block:
            return self.value[0] + line, self.key[1] + 2 + col - 1
        if line == 1:
            return self.value[0], self.value[1] + col - 1
        return self.value[0] + line - 1, 1
