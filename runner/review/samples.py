"""The sample subscriber and event an automation's preview is rendered for (docs/preview.md).

A repository may describe them: `samples/<id>.yaml` (or `.json`) with `subscriber` and
`event`, or scenario files under `scenarios/` whose `subscribers` and `events` lists are read
loosely (the first subscriber; the first event of the trigger's name, or naming the
automation). Whatever they leave out is generated from what the templates read, so the
sandbox's strict undefined never fails a preview for want of a sample.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from runner.core.model import (
    ApiTrigger,
    Automation,
    DateTrigger,
    EmailTrigger,
    EventTrigger,
    ScheduleTrigger,
)
from runner.repo.snapshot import Snapshot
from runner.templating.samples import sample_value, sample_values, template_reads

SAMPLES_DIR = "samples"
SCENARIOS_DIR = "scenarios"
_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Sample:
    """One subscriber and one event to render an email for, and where they came from."""

    email: str
    fields: dict[str, Any]
    groups: list[str]
    event: dict[str, Any]
    source: str  # "samples/welcome.yaml", "scenarios/x.yaml" or "generated"


def sample_for(
    model: Automation, templates: Mapping[str, str], snapshot: Snapshot, at: datetime
) -> Sample:
    """The sample for `model`: described in the repository where it is, generated otherwise."""
    email = model.email
    texts = [email.subject, email.preheader, email.html, email.text, *templates.values()]
    reads = template_reads(texts)
    fields = sample_values(reads.fields)
    trigger = model.trigger
    if isinstance(trigger, DateTrigger):  # the trigger reads a date the templates may not
        soon = at + timedelta(days=10)
        fields[trigger.field.removeprefix("subscriber.fields.")] = f"1990-{soon:%m-%d}"
    event = trigger_event(model, at)
    event["data"] = {**sample_values(reads.data), **event["data"]}
    given, source = _described(model, snapshot)
    person = given.get("subscriber") if isinstance(given.get("subscriber"), dict) else {}
    assert isinstance(person, dict)
    fields.update(person.get("fields") or {})
    told = given.get("event") if isinstance(given.get("event"), dict) else None
    if told is not None:
        assert isinstance(told, dict)
        event["data"].update(told.get("data") or {})
        if isinstance(told.get("occurred_at"), str):
            event["occurred_at"] = told["occurred_at"]
    address = person.get("email") if isinstance(person.get("email"), str) else None
    return Sample(
        email=(address or "alex@example.test").strip().lower(),
        fields=fields,
        groups=[str(g) for g in person.get("groups") or []],
        event=event,
        source=source,
    )


def trigger_event(model: Automation, at: datetime) -> dict[str, Any]:
    """The `event` variable the trigger supplies (docs/file-format.md), with sample values."""
    trigger = model.trigger
    stamp = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(trigger, EventTrigger):
        data: dict[str, Any] = {"group": trigger.group} if trigger.group else {}
        return {"name": trigger.event, "data": data, "occurred_at": stamp}
    if isinstance(trigger, ApiTrigger):
        return {"name": "api", "data": {}}
    if isinstance(trigger, EmailTrigger):
        data = {"automation": trigger.automation, "message_id": "msg_sample", "sent_at": stamp}
        if trigger.action.value in ("clicked", "not_clicked"):
            data["link"] = trigger.link or sample_value("link")
        return {"name": f"email.{trigger.action.value}", "data": data}
    if isinstance(trigger, DateTrigger):
        field = trigger.field.removeprefix("subscriber.fields.")
        return {"name": "date", "data": {"field": field, "date": at.date().isoformat()}}
    assert isinstance(trigger, ScheduleTrigger)
    return {"name": "schedule", "data": {"tick": stamp}}


def _described(model: Automation, snapshot: Snapshot) -> tuple[dict[str, Any], str]:
    """What the repository says about `model`'s sample: ({subscriber?, event?}, source)."""
    for suffix in _SUFFIXES:
        path = f"{SAMPLES_DIR}/{model.id}{suffix}"
        document = _read(snapshot, path)
        if isinstance(document, dict):
            return document, path
    for path in sorted(snapshot.paths()):
        if not path.startswith(SCENARIOS_DIR + "/") or not path.endswith(_SUFFIXES):
            continue
        document = _read(snapshot, path)
        if isinstance(document, dict):
            found = _from_scenario(model, document)
            if found:
                return found, path
    return {}, "generated"


def _from_scenario(model: Automation, document: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    people = [p for p in document.get("subscribers") or [] if isinstance(p, dict)]
    if people:
        found["subscriber"] = people[0]
    wanted = getattr(model.trigger, "event", None)
    for event in document.get("events") or []:
        if not isinstance(event, dict):
            continue
        name = event.get("type") or event.get("name") or event.get("event")
        if (wanted is not None and name == wanted) or event.get("automation") == model.id:
            found["event"] = event
            named = event.get("subscriber")  # the subscriber the event is for, when listed
            address = named.get("email") if isinstance(named, dict) else named
            for person in people:
                if isinstance(address, str) and person.get("email") == address:
                    found["subscriber"] = person
            break
    return found


def _read(snapshot: Snapshot, path: str) -> Any:
    raw = snapshot.read(path)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
        return json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None  # a broken sample file falls back to generated samples
