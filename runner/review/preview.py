"""Build a preview folder: every automation a change touches, rendered and described.

The change is found by the same history walk and plan as `validate --base` and `plan`
(working tree against HEAD without a base); each version left at the end is rendered
for its sample (samples.py) in the render pool, under the sender's limits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

from runner.checking.plan import Entry, build_plan
from runner.checking.walk import HistoryResult, walk_history
from runner.core.model import DateTrigger, ScheduleTrigger
from runner.core.records import Subscriber
from runner.core.timing import zone_for
from runner.core.version import Version
from runner.repo.snapshot import Snapshot
from runner.review.index import Item, Side, render_index
from runner.review.plaintext import html_to_text
from runner.review.samples import Sample, sample_for
from runner.review.timing_words import next_firings, timing_words
from runner.templating.render import RenderedEmail, RenderError, RenderUnavailable, email_job
from runner.templating.renderpool import RenderPool

INDEX = "index.md"
PREVIEW_TOKEN = "preview-token"


@dataclass
class Rendered:
    """One automation's email rendered for its sample."""

    version: Version
    sample: Sample
    email: RenderedEmail | RenderError


@dataclass
class Preview:
    """What `build_preview` wrote."""

    out: Path
    items: list[Item]
    rendered: dict[str, Rendered] = field(default_factory=dict)
    screenshots_skipped: str | None = None


def render_version(
    version: Version, snapshot: Snapshot, now: datetime, public_url: str, pool: RenderPool
) -> Rendered:
    """`version`'s email for its sample, rendered as the sender renders it."""
    sample = sample_for(version.model, version.templates, snapshot, now)
    subscriber = Subscriber(
        id=None, email=sample.email, fields=dict(sample.fields), groups=set(sample.groups)
    )
    url = f"{public_url.rstrip('/')}/u/{PREVIEW_TOKEN}"
    try:
        job = email_job(version.model, version.templates, subscriber, sample.event, url)
        (outcome,) = pool.render([job])
    except RenderError as error:
        outcome = error
    if isinstance(outcome, RenderUnavailable):
        raise outcome
    return Rendered(version, sample, outcome)


def build_preview(
    root: Path,
    base: str | None,
    out: Path,
    now: datetime,
    public_url: str,
    shoot: Callable[[str, Path], str | None] | None = None,
) -> Preview:
    """Write `out/<id>/email.*` and `out/index.md` for every automation the change touches.

    `shoot(html, png_path)` takes a screenshot and returns None, or why it did not.
    """
    result = walk_history(root, base, now)
    entries = _entries(result, base)
    out.mkdir(parents=True, exist_ok=True)
    preview = Preview(out, [])
    pool = RenderPool(size=1)
    try:
        for entry in entries:
            preview.items.append(_item(entry, result, out, now, public_url, pool, shoot, preview))
    finally:
        pool.close()
    preview.items.extend(_invalid_items(result, {entry.id for entry in entries}))
    preview.items.sort(key=lambda item: item.id)
    head = result.final_tree.snapshot.commit
    base_commit = result.base_tree.snapshot.commit or base
    index = render_index(preview.items, base_commit, head)
    (out / INDEX).write_text(index, encoding="utf-8")
    return preview


def _entries(result: HistoryResult, base: str | None) -> list[Entry]:
    plan = build_plan(
        result.net_changes,
        result.steps,
        base=result.base_tree.snapshot.commit or base,
        head=result.final_tree.snapshot.commit,
        findings=result.findings,
    )
    return [entry for entry in plan.entries if entry.change != "unchanged"]


def _item(
    entry: Entry,
    result: HistoryResult,
    out: Path,
    now: datetime,
    public_url: str,
    pool: RenderPool,
    shoot: Callable[[str, Path], str | None] | None,
    preview: Preview,
) -> Item:
    before = result.base_tree.versions.get(entry.id)
    after = result.final_tree.versions.get(entry.id)
    item = Item(
        id=entry.id,
        change=entry.change,
        path=entry.path,
        before=_side(before),
        after=_side(after),
        lifecycle=entry.status,
        blocked=[f"{note.rule}: {note.message}" for note in entry.blocked],
    )
    if after is None:
        if entry.change != "deleted":
            item.notes.append("not rendered: the new version does not validate")
        return item
    config = result.final_tree.config
    model = after.model
    item.timing = timing_words(model)
    rendered = render_version(after, result.final_tree.snapshot, now, public_url, pool)
    preview.rendered[entry.id] = rendered
    item.sample = rendered.sample.source
    item.firings = next_firings(model, now, config.timezone, rendered.sample.fields)
    item.firings_zone = _firing_zone(model, config.timezone, rendered.sample.fields)
    email = rendered.email
    if isinstance(email, RenderError):
        item.notes.append(f"render error: {email}")
        return item
    item.rendered_subject = email.subject
    folder = out / entry.id
    folder.mkdir(parents=True, exist_ok=True)
    if email.html is not None:
        (folder / "email.html").write_text(email.html, encoding="utf-8")
        item.files.append("email.html")
    text = email.text
    if text is None and email.html is not None:
        item.notes.append("no text part: email.txt is the HTML's text, for review only")
        text = html_to_text(email.html)
    (folder / "email.txt").write_text(text or "", encoding="utf-8")
    item.files.append("email.txt")
    if email.html is not None and shoot is not None:
        skipped = shoot(email.html, folder / "email.png")
        if skipped is None:
            item.files.append("email.png")
        else:
            preview.screenshots_skipped = skipped
            item.notes.append(f"screenshot: {skipped}")
    return item


def _invalid_items(result: HistoryResult, listed: set[str]) -> list[Item]:
    """Files the change edited into something that does not validate: named, not rendered."""
    base, final = result.base_tree, result.final_tree
    invalid = final.invalid_files()
    items: list[Item] = []
    for path, checked in sorted(final.files.items()):
        model = checked.loaded.model
        ident = model.id if model is not None else PurePosixPath(path).stem
        if ident not in invalid or ident in listed:
            continue
        if base.snapshot.blob_id(path) == final.snapshot.blob_id(path):
            continue  # broken before the change too: `validate` says so, not the preview
        first = invalid[ident][0] if invalid[ident] else None
        why = f" ({first.rule}: {first.message})" if first is not None else ""
        item = Item(ident, "invalid", path, _side(base.versions.get(ident)), None)
        item.notes.append(f"not rendered: the new version does not validate{why}")
        items.append(item)
        listed.add(ident)
    return items


def _side(version: Version | None) -> Side | None:
    if version is None:
        return None
    model = version.model
    return Side(model.email.subject, model.email.from_, model.status.value)


def _firing_zone(model: object, default: str, fields: dict[str, object]) -> str:
    trigger = getattr(model, "trigger", None)
    if isinstance(trigger, ScheduleTrigger):
        return trigger.timezone or default
    if isinstance(trigger, DateTrigger):
        zone: ZoneInfo = zone_for(trigger.timezone, fields, default)
        return str(zone.key)
    return default
