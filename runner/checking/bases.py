"""`--base auto`: which commit a branch is judged from, found the way a push needs it.

In order: the refs pre-commit passes to a pre-push hook (`PRE_COMMIT_FROM_REF` ..
`PRE_COMMIT_TO_REF`; an all-zero or unknown from-ref is skipped), the branch's upstream, the
merge base with the remote's default branch (`origin/HEAD`, then `origin/main`,
`origin/master`). With none of them (a first push to an empty remote), the files at the
pushed commit are checked without history. docs/output-formats.md, "Choosing the base".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.repo.git import Git

AUTO = "auto"
FROM_REF = "PRE_COMMIT_FROM_REF"
TO_REF = "PRE_COMMIT_TO_REF"
REMOTE = "PRE_COMMIT_REMOTE_NAME"


@dataclass(frozen=True)
class Base:
    """Where a walk starts and ends, and why (printed, so the user knows what was judged)."""

    ref: str | None  # None: no base found, only the files at `head` are checked
    head: str | None  # None: HEAD, then the working tree
    why: str


def resolve_base(root: Path, given: str, env: Mapping[str, str]) -> Base:
    """`given` as is, or for `auto` the first base that applies (module docstring)."""
    if given != AUTO:
        return Base(given, None, f"--base {given}")
    with Git(root) as git:
        return _auto(git, env)


def _auto(git: Git, env: Mapping[str, str]) -> Base:
    to_ref = env.get(TO_REF, "").strip()
    head = to_ref if to_ref and not _zeros(to_ref) and git.has_commit(to_ref) else None
    from_ref = env.get(FROM_REF, "").strip()
    if head is not None and from_ref and not _zeros(from_ref) and git.has_commit(from_ref):
        return Base(from_ref, head, f"judging since {from_ref[:7]}, the remote side of the push")
    upstream = git.upstream()
    if upstream is not None:
        return Base(upstream, head, f"judging since {upstream}, the branch's upstream")
    remote = env.get(REMOTE, "").strip() or "origin"
    candidates = [git.remote_head(remote), f"{remote}/main", f"{remote}/master"]
    for candidate in candidates:
        if candidate and git.has_commit(candidate):
            why = f"judging since the merge base with {candidate}, the remote's default branch"
            return Base(candidate, head, why)
    why = (
        f"no base found (no pre-commit refs, no upstream, no {remote}/HEAD, {remote}/main or "
        f"{remote}/master): the files at {(head or 'HEAD')[:7]} are checked without history"
    )
    return Base(None, head, why)


def _zeros(ref: str) -> bool:
    return set(ref) == {"0"}
