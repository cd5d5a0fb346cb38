"""The catalogue of rule ids: each finding names one, and docs/rules.md lists them all.

Rule ids are a public interface (CI scripts grep them, `--format json` carries
them): never rename one, only add.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule's default severity, one-line summary and default help text."""

    severity: str
    summary: str
    help: str


def _e(summary: str, help: str) -> Rule:
    return Rule("error", summary, help)


def _w(summary: str, help: str) -> Rule:
    return Rule("warning", summary, help)


RULES: dict[str, Rule] = {
    # Reading the file (loader.py)
    "file-too-large": _e(
        "The file (an automation, a template or postwright.yaml) is larger than 1 MiB.",
        "split the content into smaller files",
    ),
    "file-encoding": _e("The file is not valid UTF-8.", "save the file as UTF-8"),
    "file-outside-repo": _e(
        "A file resolves outside the repository, or into `.git/` or `.postwright/`.",
        "replace the symlink with the file itself, or point it at a file in the repository",
    ),
    "file-not-regular": _e(
        "A file is a FIFO, a device, a socket or a folder, not a regular file.",
        "replace it with a regular file",
    ),
    "file-unreadable": _e(
        "A file cannot be read (permissions or an I/O error).",
        "make the file readable by the user running Postwright",
    ),
    "check-crashed": _e(
        "Checking this file failed unexpectedly; the file is treated as invalid.",
        "simplify the file, and report the message to the Postwright maintainers",
    ),
    "wrong-extension": _e(
        "A `.yml` file under automations/ is never loaded.", "rename the file to `.yaml`"
    ),
    "yaml-syntax": _e("The file is not valid YAML.", "fix the YAML syntax at this position"),
    "yaml-multiple-documents": _e(
        "The file holds more than one YAML document.", "keep one automation per file"
    ),
    "yaml-duplicate-key": _e("A mapping repeats a key.", "remove one of the two keys"),
    "yaml-boolean": _e(
        "A YAML 1.1 boolean word (yes/no/on/off) is ambiguous.",
        'quote it ("no") or write true/false',
    ),
    "yaml-tag": _e("Custom YAML tags are not allowed.", "remove the `!tag`"),
    "yaml-anchor": _e(
        "YAML anchors and aliases are not allowed.", "write the value out where it is used"
    ),
    "yaml-too-deep": _e("The file nests deeper than 64 levels.", "flatten the structure"),
    # Shape (model.py through the loader)
    "schema": _e(
        "The value does not match the automation schema.",
        "see the JSON Schema: `postwright schema` (in a repository, schema/automation.schema.json)",
    ),
    "invalid-duration": _e(
        "A duration is not of the form 30s, 15m, 12h, 7d, 2w or a combination.",
        "write a duration such as `7d` or `1d12h`",
    ),
    "invalid-time": _e("A time of day is not `HH:MM`.", 'quote it: "09:00"'),
    "invalid-timezone": _e("A time zone is not an IANA name.", "use a name such as `Asia/Seoul`"),
    "invalid-cron": _e(
        "A cron expression is not valid (5 fields).", "use 5 fields: minute hour day month weekday"
    ),
    "invalid-field-path": _e(
        "A condition field is not a path into `subscriber` or `event`.",
        "start the path with `subscriber.` or `event.`",
    ),
    "invalid-address": _e(
        "An email address (`from`, `reply_to`) is not `name@domain` or `Name <name@domain>`.",
        'write an address such as `news@shop.example` or `"Shop, Inc" <news@shop.example>`',
    ),
    "datetime-offset": _e(
        "A date-time lacks a UTC offset.", "add an offset, e.g. `2026-12-01T09:00:00+09:00`"
    ),
    "start-at-required": _e(
        "A scheduled automation needs `start_at`.", "add `start_at` or set another status"
    ),
    "stop-at-before-start": _e(
        "`stop_at` is not later than `start_at`.", "move `stop_at` after `start_at`"
    ),
    "window-empty": _e(
        "A send window starts when it ends.", "choose different `start` and `end` times"
    ),
    "trigger-group": _e(
        "`group` is required for group.joined/group.left triggers and forbidden otherwise.",
        "add or remove `group`",
    ),
    "trigger-within": _e(
        "`within` is required for not_opened/not_clicked and forbidden otherwise.",
        "add or remove `within`",
    ),
    "trigger-link": _e(
        "`link`/`link_contains` apply only to clicked/not_clicked, and only one of them.",
        "keep at most one link filter, on a click action",
    ),
    "trigger-never-sends": _e(
        "This trigger fires only for subscribers who can no longer receive email.",
        "trigger on another event",
    ),
    "retrigger-not-allowed": _e(
        "`date` and `schedule` triggers take no `retrigger`.", "remove `retrigger`"
    ),
    "repeat-not-allowed": _e(
        "`schedule` triggers take no `repeat` (the cron is the repeat).", "remove `repeat`"
    ),
    "email-body-required": _e(
        "The email has no body.", "add `html`, `html_file`, `text` or `text_file`"
    ),
    "email-body-conflict": _e(
        "A body is given both inline and as a file.",
        "keep either `html` or `html_file` (and `text` or `text_file`)",
    ),
    "literal-secret": _e(
        "A secret is written into the file.",
        "put the secret in an environment variable and name it with a `*_env` key",
    ),
    # Across files (semantics.py)
    "id-mismatch": _e("The `id` differs from the file name.", "rename the file to `<id>.yaml`"),
    "id-duplicate": _e("Two files declare the same `id`.", "give each automation its own id"),
    "unknown-automation": _e(
        "`trigger.automation` names no automation.", "name an existing automation id"
    ),
    "unknown-provider": _e(
        "`provider` names no provider in postwright.yaml.", "declare it under `providers:`"
    ),
    "template-missing": _e(
        "A template file does not exist.", "check the path (relative to this file)"
    ),
    "template-outside-repo": _e(
        "A template path leaves the repository.", "keep template files inside the repository"
    ),
    "template-syntax": _e("A template does not parse.", "fix the Jinja2 syntax"),
    "template-too-complex": _e(
        "A template nests deeper than a template can ever render.",
        "flatten nested loops and expressions (at most 20 nested loops), or use a macro",
    ),
    "template-unknown-name": _e(
        "A template uses a name that is never defined.",
        "use subscriber, event, automation or unsubscribe_url",
    ),
    "template-event-data": _w(
        "A template reads `event.data.*` that this trigger cannot supply.",
        "read the value from subscriber.fields, or guard it with `| default(...)`",
    ),
    "link-empty": _w("A link has no target (`href` empty or `#`).", "give the link a real URL"),
    "link-placeholder": _w(
        "A link points at a placeholder host (example.com, or a scheme with no host).",
        "replace the placeholder with the real URL",
    ),
    "email-trigger-cycle": _e(
        "A cycle of email triggers can send forever.", "set `retrigger: false` on one member"
    ),
    "source-unavailable": _e(
        "An email trigger names a stopped or deleted automation.",
        "a stopped automation sends nothing: trigger on another one",
    ),
    "source-stopped": _w(
        "The automation this email trigger listens to has stopped.",
        "this trigger will not fire again; stop or change it",
    ),
    "source-not-running": _w(
        "Emails sent while this automation is not running never count for its email trigger.",
        "start this automation before (or with) its source",
    ),
    "start-at-passed": _w(
        "A scheduled `start_at` has already passed.", "write `status: running`, or move `start_at`"
    ),
    "stale-status": _w(
        "The written status lags the effective one.", "write the effective status into the file"
    ),
    "too-many-emails": _w(
        "One event can start more automations than `max_emails_per_day`.",
        "add conditions, a wait, or merge automations",
    ),
    "daily-volume": _w(
        "In the worst case one subscriber gets more than `max_emails_per_day` emails in one "
        "day from one trigger source (an event, an API call, a date or a schedule) and the "
        "automations whose `email` triggers follow it, counting waits, send windows, repeats "
        "and `retrigger`.",
        "spread the chain out with waits, drop repeats, add an audience, "
        "or raise `max_emails_per_day`",
    ),
    # Between versions (lifecycle.py, history walk)
    "transition-not-allowed": _e(
        "This status change is not allowed.", "see the transition table in docs/rules.md"
    ),
    "edit-not-allowed": _e(
        "The definition changed while the automation is not editable.",
        "set `status: paused` in an earlier commit, then edit",
    ),
    "start-at-not-scheduled": _e(
        "`start_at` may be added or changed only when the status is scheduled.",
        "set `status: scheduled` with the new `start_at`, or leave it unchanged",
    ),
    "stop-at-in-past": _e(
        "A new `stop_at` is not in the future.", "set `status: stopped` to stop now"
    ),
    "stop-at-after-stop": _e(
        "`stop_at` cannot change once the automation has stopped.", "leave `stop_at` as it was"
    ),
    "delete-running": _e("A running automation's file was deleted.", "pause or stop it first"),
    "id-reused": _e(
        "This id belonged to a deleted automation; ids are never reused.", "choose a new id"
    ),
    "rename-resets-dedupe": _w(
        "A renamed automation starts with fresh stats and retrigger memory.",
        "keep the old id if subscribers must not enter again",
    ),
    "squash-unsafe": _w(
        "Every commit is legal, but the net change is not.",
        "merge with a merge commit or rebase, not squash",
    ),
    "refused-then-repaired": _w(
        "A commit of the branch is refused for an automation (an invalid file, a change the "
        "rules do not allow), and a later commit of the same branch makes it accepted again: "
        "the runner applies the branch and ends where HEAD is, only that commit's version is "
        "never applied (also an earlier commit's `.yml` file or broken `postwright.yaml` "
        "that HEAD no longer has). Errors still present at HEAD, or refusals HEAD depends on, "
        "fail.",
        "nothing to do: the runner skips the refused version and applies the repair",
    ),
}
