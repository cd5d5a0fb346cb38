"""Git access over real repositories: commits, snapshots, blobs, working tree, retired ids."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.errors import GitError
from runner.repo.git import CommitInfo, Entry, Git
from runner.repo.snapshot import git_blob_id
from tests.gitrepo import GitRepo, automation


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write("automations/a.yaml", automation("a"))
    repo.write("automations/team/b.yaml", automation("b"))
    repo.write("README.md", "readme\n")
    repo.commit("base")
    return repo


def test_commits_are_topological_with_parents(repo: GitRepo) -> None:
    base = repo.head()
    repo.branch("feature")
    repo.write("automations/a.yaml", automation("a", "paused"))
    side = repo.commit("pause a")
    repo.checkout("main")
    repo.write("README.md", "changed\n")
    main = repo.commit("readme")
    merge = repo.merge("feature", "merge feature")
    with Git(repo.path) as git:
        commits = git.commits(base, merge)
        assert git.merge_base(side, main) == base
        assert git.resolve("HEAD") == merge
        assert git.resolve(merge[:10]) == merge
    assert {c.sha for c in commits[:2]} == {side, main}
    assert commits[2] == CommitInfo(merge, (main, side))
    assert commits[0].parents == (base,)


def test_snapshot_reads_blobs_through_one_batch_process(repo: GitRepo) -> None:
    with Git(repo.path) as git:
        snapshot = git.snapshot(repo.head())
        assert sorted(snapshot.paths()) == [
            "README.md",
            "automations/a.yaml",
            "automations/team/b.yaml",
        ]
        content = automation("b").encode()
        assert snapshot.read("automations/team/b.yaml") == content
        assert snapshot.blob_id("automations/team/b.yaml") == git_blob_id(content)
        assert snapshot.read("README.md") == b"readme\n"
        assert snapshot.read("missing.yaml") is None
        batch = git._batch
        assert batch is not None
        assert snapshot.read("automations/a.yaml") == automation("a").encode()
        assert git._batch is batch  # the same process served every read
    assert git._batch is None


def test_incremental_snapshot_equals_ls_tree(repo: GitRepo) -> None:
    base = repo.head()
    repo.remove("automations/a.yaml")
    repo.write("automations/c.yaml", automation("c"))
    repo.write("automations/team/b.yaml", automation("b", "paused"))
    first = repo.commit("one")
    repo.move("automations/c.yaml", "automations/x/c.yaml")
    second = repo.commit("two")
    with Git(repo.path) as git:
        one, two = git.changes([(first, base), (second, first)])
        assert one == {
            "automations/a.yaml": None,
            "automations/c.yaml": Entry(git_blob_id(automation("c").encode())),
            "automations/team/b.yaml": Entry(git_blob_id(automation("b", "paused").encode())),
        }
        stepped = git.snapshot(base).changed(first, one).changed(second, two)
        direct = git.snapshot(second)
        assert {p: stepped.blob_id(p) for p in stepped.paths()} == {
            p: direct.blob_id(p) for p in direct.paths()
        }
        assert stepped.commit == second


def test_working_tree_has_untracked_not_ignored_files(repo: GitRepo) -> None:
    repo.write(".gitignore", "ignored.yaml\n")
    repo.commit("ignore")
    repo.write("automations/new.yaml", automation("new"))
    repo.write("automations/ignored.yaml", automation("ignored"))
    repo.remove("automations/a.yaml")
    repo.write("automations/team/b.yaml", automation("b", "paused"))
    with Git(repo.path) as git:
        tree = git.working_tree()
        assert sorted(tree.paths()) == [
            ".gitignore",
            "README.md",
            "automations/new.yaml",
            "automations/team/b.yaml",
        ]
        assert tree.read("automations/team/b.yaml") == automation("b", "paused").encode()
        assert tree.commit is None


def test_retired_ids_skip_moves_and_ids_present_again(repo: GitRepo) -> None:
    repo.remove("automations/a.yaml")
    repo.commit("delete a")
    repo.move("automations/team/b.yaml", "automations/b.yaml")
    repo.commit("move b")
    repo.write("automations/c.yaml", automation("c"))
    repo.commit("add c")
    repo.remove("automations/c.yaml")
    repo.write("automations/renamed.yaml", automation("renamed"))
    repo.commit("rename c")
    repo.write("notes/x.yaml", "x\n")
    repo.commit("unrelated")
    repo.remove("notes/x.yaml")
    repo.commit("unrelated delete")
    with Git(repo.path) as git:
        assert git.retired_ids(repo.head()) == {"a", "c"}
        assert git.retired_ids("HEAD~4") == {"a"}


def test_missing_ref_names_the_fetch(repo: GitRepo) -> None:
    with Git(repo.path) as git, pytest.raises(GitError) as caught:
        git.resolve("origin/release")
    assert str(caught.value) == (
        "base commit `origin/release` is not in this clone: run `git fetch origin release`; "
        "in GitHub Actions, give `actions/checkout` `fetch-depth: 0`"
    )


def test_shallow_clone_missing_base_names_unshallow(repo: GitRepo, tmp_path: Path) -> None:
    base = repo.head()
    repo.write("automations/a.yaml", automation("a", "paused"))
    repo.commit("pause")
    clone = repo.shallow_clone(tmp_path / "clone")
    with Git(clone.path) as git:
        assert git.is_shallow()
        with pytest.raises(GitError) as caught:
            git.resolve(base)
    assert str(caught.value) == (
        f"base commit {base[:7]} is not in this clone (shallow?): run `git fetch --unshallow` "
        f"or `git fetch origin {base}`; in GitHub Actions, give `actions/checkout` "
        "`fetch-depth: 0`"
    )


def test_not_a_repository_is_a_git_error(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="rev-parse"):
        Git(tmp_path)


def test_committed_symlinks_are_followed_inside_the_commit_only(repo: GitRepo) -> None:
    repo.write("templates/real.html", "<p>real</p>")
    (repo.path / "templates" / "alias.html").symlink_to("real.html")
    (repo.path / "shared").symlink_to("templates")
    (repo.path / "templates" / "env.txt").symlink_to("/proc/self/environ")
    (repo.path / "templates" / "up.html").symlink_to("../../outside.html")
    (repo.path / "templates" / "loop.html").symlink_to("loop.html")
    (repo.path / "automations" / "linked.yaml").symlink_to("a.yaml")
    commit = repo.commit("symlinks")
    with Git(repo.path) as git:
        snapshot = git.snapshot(commit)
        real = git_blob_id(b"<p>real</p>")
        assert snapshot.read("templates/alias.html") == b"<p>real</p>"
        assert snapshot.blob_id("templates/alias.html") == real
        assert snapshot.read("shared/real.html") == b"<p>real</p>"
        assert snapshot.read("automations/linked.yaml") == automation("a").encode()
        assert "automations/linked.yaml" in set(snapshot.paths())
        for path, rule in (
            ("templates/env.txt", "file-outside-repo"),
            ("templates/up.html", "file-outside-repo"),
            ("templates/loop.html", "file-not-regular"),
        ):
            refused = snapshot.refusal(path)
            assert refused is not None and refused.rule == rule, path
            assert snapshot.read(path) is None
            assert snapshot.blob_id(path) == refused.id
        assert "/proc/self/environ" in str(snapshot.refusal("templates/env.txt"))
        assert snapshot.refusal("templates/real.html") is None


def test_symlink_changes_reach_incremental_snapshots(repo: GitRepo) -> None:
    base = repo.head()
    (repo.path / "automations" / "env.yaml").symlink_to("/proc/self/environ")
    first = repo.commit("add a symlink")
    with Git(repo.path) as git:
        [changes] = git.changes([(first, base)])
        assert changes["automations/env.yaml"] is not None
        assert changes["automations/env.yaml"].link
        stepped = git.snapshot(base).changed(first, changes)
        refused = stepped.refusal("automations/env.yaml")
        assert refused is not None and refused.rule == "file-outside-repo"


def test_blobs_over_the_cap_are_skipped_not_held(repo: GitRepo) -> None:
    repo.write("templates/big.html", "x" * (1024 * 1024 + 1))
    repo.write("templates/small.html", "small")
    commit = repo.commit("big")
    with Git(repo.path) as git:
        snapshot = git.snapshot(commit)
        git.prefetch([snapshot.blob_id("templates/big.html") or ""])
        assert snapshot.read("templates/big.html") is None
        refused = snapshot.refusal("templates/big.html")
        assert refused is not None and refused.rule == "file-too-large"
        assert snapshot.read("templates/small.html") == b"small"  # the stream stayed in step


def test_working_tree_lists_symlinks_and_refuses_special_files(repo: GitRepo) -> None:
    (repo.path / "automations" / "env.yaml").symlink_to("/proc/self/environ")
    os.mkfifo(repo.path / "automations" / "pipe.yaml")
    with Git(repo.path) as git:
        tree = git.working_tree()
        assert "automations/env.yaml" in set(tree.paths())
        assert "automations/pipe.yaml" not in set(tree.paths())  # git never lists a FIFO
        refused = tree.refusal("automations/env.yaml")
        assert refused is not None and refused.rule == "file-outside-repo"
        # Read by name (as a template is), the FIFO is refused, not waited on.
        refused = tree.refusal("automations/pipe.yaml")
        assert refused is not None and refused.rule == "file-not-regular"
