"""Static checks of the email templates of an automation (SPEC 1); pure.

STUB: filled in by the templates work package.
"""

from __future__ import annotations

from collections.abc import Mapping

from runner.findings import Finding
from runner.loader import Loaded
from runner.model import Automation


def template_findings(
    loaded: Loaded[Automation],
    paths: Mapping[str, str | None],
    texts: Mapping[str, str | None],
) -> list[Finding]:
    """Findings about the subject, preheader and bodies of a valid automation.

    `paths` maps `html_file` / `text_file` to the resolved repository path
    (None when the name leaves the repository); `texts` maps the same keys to
    the file's text (None when the file does not exist).
    """
    return []
