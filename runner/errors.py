"""The exception tree of Postwright, drawn once here.

PostwrightError
├── UsageError        bad command-line input (exit 2)
└── GitError          a git command failed or an object is missing (exit 2)

Findings about automation files are never exceptions: they are `Finding`
values collected by validation (see `findings.py`).
"""


class PostwrightError(Exception):
    """Root of every error Postwright raises on purpose."""

    exit_code = 2


class UsageError(PostwrightError):
    """The command line asked for something that cannot be done."""


class GitError(PostwrightError):
    """A git command failed, or the history lacks an object it needs."""
