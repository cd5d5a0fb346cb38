"""Which automations a change concerns: the ids read from changed paths (an automation file,
or a template file some automation reads) in checked trees, and the uncommitted paths that
matter to the reloader."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from runner.checking.tree import Tree
from runner.core.layout import AUTOMATIONS_DIR, CONFIG_PATH, is_automation_path
from runner.engine.catalog import DELETED
from runner.store.base import ReadTx


def _stem(path: str) -> str:
    return posixpath.basename(path).removesuffix(".yaml")


def ids_at(paths: Iterable[str], trees: Iterable[Tree]) -> set[str]:
    """Automation ids read from `paths` (or from files using them as templates) in `trees`."""
    trees = tuple(trees)
    ids: set[str] = set()
    for path in paths:
        users = {path} if is_automation_path(path) else set()
        for tree in trees:
            users |= tree.template_users.get(path, set())
        for user in users:
            ids.add(_stem(user))
            for tree in trees:
                result = tree.files.get(user)
                if result is not None and result.loaded.model is not None:
                    ids.add(result.loaded.model.id)
    return ids


def changed_ids(previous: Tree, tree: Tree) -> set[str]:
    """Ids whose file result differs between two trees of one checker (cached by content)."""
    paths = set()
    for path in previous.files.keys() | tree.files.keys():
        old, new = previous.files.get(path), tree.files.get(path)
        if (
            old is None
            or new is None
            or old.loaded is not new.loaded
            or old.version is not new.version
        ):
            paths.add(path)
    return ids_at(paths, (previous, tree))


def watched(path: str, trees: Iterable[Tree]) -> bool:
    """Whether an uncommitted path matters (not the database or other files in the checkout)."""
    if path.startswith(AUTOMATIONS_DIR) or path == CONFIG_PATH:
        return True
    return any(path in tree.template_users for tree in trees)


def all_ids(tx: ReadTx, tree: Tree) -> set[str]:
    """The applied ids and those the files of `tree` name."""
    ids = {row.id for row in tx.automations() if row.status != DELETED}
    return ids | ids_at(tree.files, (tree,))
