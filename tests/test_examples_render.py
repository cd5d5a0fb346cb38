"""Every example automation of `automations/` renders with the sample data of `samples/`
(a sample subscriber and one event per trigger type), in process as a render worker does."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.checking.tree import check_working_tree
from runner.core.records import Subscriber
from runner.templating.render import email_job, render_job

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
TRIGGER_TYPES = ("event", "api", "email", "date", "schedule")
EXAMPLES = sorted(p.stem for p in (ROOT / "automations").rglob("*.yaml"))


def _sample(path: Path) -> dict[str, Any]:
    value: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return value


def _subscriber() -> Subscriber:
    person = _sample(SAMPLES / "subscriber.yaml")
    return Subscriber(None, person["email"], person["fields"], set(person["groups"]))


def test_there_is_a_sample_event_for_every_trigger_type() -> None:
    names = sorted(p.stem for p in (SAMPLES / "events").glob("*.yaml"))
    assert names == sorted(TRIGGER_TYPES)
    for kind in TRIGGER_TYPES:
        event = _sample(SAMPLES / "events" / f"{kind}.yaml")
        assert isinstance(event["name"], str) and isinstance(event["data"], dict)


def test_the_examples_use_every_trigger_type_and_validate_clean() -> None:
    tree = check_working_tree(ROOT, NOW)
    assert list(tree.findings) == []
    assert sorted(tree.versions) == EXAMPLES
    used = {version.model.trigger.type for version in tree.versions.values()}
    assert used == set(TRIGGER_TYPES)


@pytest.mark.parametrize("automation_id", EXAMPLES)
def test_every_example_renders_with_the_sample_data(automation_id: str) -> None:
    version = check_working_tree(ROOT, NOW).versions[automation_id]
    model = version.model
    event = _sample(SAMPLES / "events" / f"{model.trigger.type}.yaml")
    url = "https://runner.shop.postwright.dev/u/TOKEN"
    rendered = render_job(email_job(model, version.templates, _subscriber(), event, url))
    assert rendered.subject.strip()
    parts = [part for part in (rendered.html, rendered.text) if part is not None]
    assert parts, "an example has a body"
    for part in parts:
        assert "{{" not in part and "{%" not in part
        assert "<built-in method" not in part  # a dict method where a key was meant


def test_the_order_example_lists_the_sample_items() -> None:
    version = check_working_tree(ROOT, NOW).versions["order-confirmation"]
    event = _sample(SAMPLES / "events" / "api.yaml")
    job = email_job(version.model, version.templates, _subscriber(), event, "https://u.test/u/x")
    html = render_job(job).html
    assert html is not None
    assert "2 &times; Enamel mug" in html and "Loose-leaf tea" in html
    assert "Order A-1042 confirmed" == render_job(job).subject
