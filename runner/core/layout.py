"""Where a repository keeps what the runner reads: automation files and `postwright.yaml`."""

from __future__ import annotations

AUTOMATIONS_DIR = "automations/"
CONFIG_PATH = "postwright.yaml"


def is_automation_path(path: str) -> bool:
    """Whether `path` (repository-relative) is loaded as an automation file."""
    return path.startswith(AUTOMATIONS_DIR) and path.endswith(".yaml")
