"""`postwright init`: the scaffold of a team repository validates, its workflow passes
actionlint, its pre-commit config runs through pre-commit itself, and nothing is
overwritten without `--force`."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from runner.cli.init import SCHEMA_PATH, Source, scaffold
from runner.cli.main import main
from runner.core.schema import schema_text
from tests.gitrepo import GitRepo

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
SHA = "0123456789abcdef0123456789abcdef01234567"
EXPECTED = {
    ".github/workflows/postwright.yml",
    ".gitignore",
    ".pre-commit-config.yaml",
    ".vscode/settings.json",
    "README.md",
    "automations/welcome.yaml",
    "postwright.yaml",
    "samples/event.yaml",
    "samples/subscriber.yaml",
    SCHEMA_PATH,
    "templates/welcome.html",
    "templates/welcome.txt",
}


def _init(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["init", *argv], stdout=out)
    return code, out.getvalue()


# --- what the scaffold holds ------------------------------------------------------


def test_the_scaffold_has_every_file_with_the_source_filled_in() -> None:
    files = scaffold(Source("https://github.com/acme/postwright", SHA))
    assert set(files) == EXPECTED
    assert [path for path, text in files.items() if "__POSTWRIGHT_" in text] == []
    assert files[SCHEMA_PATH] == schema_text()
    config = yaml.safe_load(files[".pre-commit-config.yaml"])
    [hooks_repo] = config["repos"]
    assert hooks_repo["repo"] == "https://github.com/acme/postwright"
    assert hooks_repo["rev"] == SHA
    workflow = yaml.safe_load(files[".github/workflows/postwright.yml"])
    [step] = workflow["jobs"]["postwright"]["steps"]
    assert step["uses"] == f"acme/postwright@{SHA}"
    assert f"postwright @ git+https://github.com/acme/postwright@{SHA}" in files["README.md"]


def test_the_editor_settings_and_the_example_point_at_the_written_schema() -> None:
    files = scaffold(Source("/opt/postwright", SHA))
    settings = json.loads(files[".vscode/settings.json"])
    [(schema, globs)] = settings["yaml.schemas"].items()
    assert Path(schema).as_posix().removeprefix("./") == SCHEMA_PATH
    assert globs == ["automations/**/*.yaml"]
    first_line = files["automations/welcome.yaml"].splitlines()[0]
    relative = first_line.removeprefix("# yaml-language-server: $schema=")
    assert (Path("automations") / relative).as_posix().replace("automations/../", "") == SCHEMA_PATH
    assert "status: draft" in files["automations/welcome.yaml"]


def test_a_local_checkout_is_installed_and_hooked_by_path() -> None:
    source = Source("/opt/postwright", SHA)
    assert source.install == f"postwright @ git+file:///opt/postwright@{SHA}"
    assert source.action == f"OWNER/postwright@{SHA}"
    ssh = Source("git@github.com:acme/postwright.git", SHA)
    assert ssh.install == f"postwright @ git+ssh://git@github.com/acme/postwright.git@{SHA}"
    assert ssh.action == f"acme/postwright@{SHA}"


# --- the command ------------------------------------------------------------------


def test_init_refuses_to_overwrite_and_names_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team = tmp_path / "team"
    (team / "automations").mkdir(parents=True)
    (team / "automations" / "welcome.yaml").write_text("mine\n", encoding="utf-8")
    (team / "README.md").write_text("ours\n", encoding="utf-8")
    code, _ = _init(str(team))
    assert code == 2
    error = capsys.readouterr().err
    assert "automations/welcome.yaml" in error and "README.md" in error and "--force" in error
    assert "postwright.yaml" not in error
    assert sorted(p.name for p in team.rglob("*") if p.is_file()) == ["README.md", "welcome.yaml"]
    assert (team / "README.md").read_text(encoding="utf-8") == "ours\n"
    code, printed = _init(str(team), "--force")
    assert code == 0
    assert "automations/welcome.yaml" in printed
    assert "id: welcome" in (team / "automations" / "welcome.yaml").read_text(encoding="utf-8")


def test_init_that_cannot_write_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "templates").write_text("a file where a folder goes\n")
    code, _ = _init(str(tmp_path / "team"))
    assert code == 2
    assert "cannot write" in capsys.readouterr().err


def test_init_pins_the_given_repository_and_commit(tmp_path: Path) -> None:
    code, printed = _init(
        str(tmp_path / "team"),
        "--postwright-repo",
        "https://github.com/acme/postwright.git",
        "--postwright-rev",
        SHA,
    )
    assert code == 0
    assert "OWNER" not in printed
    assert "`git init -b main`" in printed  # not inside a repository yet
    workflow = (tmp_path / "team" / ".github" / "workflows" / "postwright.yml").read_text()
    assert f"uses: acme/postwright@{SHA}" in workflow
    # Without --postwright-rev: the commit this Postwright was installed from (this checkout).
    code, printed = _init(
        str(tmp_path / "other"), "--postwright-repo", "git@github.com:acme/postwright.git"
    )
    assert code == 0 and "OWNER" not in printed and "COMMIT_SHA" not in printed
    workflow = (tmp_path / "other" / ".github" / "workflows" / "postwright.yml").read_text()
    assert re.search(r"uses: acme/postwright@[0-9a-f]{40}\n", workflow), workflow


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    """A scaffold made by `init` (hooks pinned to this checkout), committed in a new repo."""
    root = tmp_path_factory.mktemp("init") / "team"
    code, printed = _init(str(root))
    assert code == 0, printed
    repo = GitRepo(root)
    repo.commit("postwright init")
    return repo


def test_the_scaffold_validates_clean(team: GitRepo) -> None:
    out = io.StringIO()
    assert main(["validate", "--repo", str(team.path)], stdout=out) == 0, out.getvalue()
    out = io.StringIO()
    code = main(["validate", "--repo", str(team.path), "--base", "HEAD"], stdout=out)
    assert code == 0, out.getvalue()


def test_the_scaffold_example_renders_with_its_samples(team: GitRepo) -> None:
    out = io.StringIO()
    argv = ["render", "welcome", "--repo", str(team.path)]
    argv += ["--subscriber", str(team.path / "samples" / "subscriber.yaml")]
    argv += ["--event", str(team.path / "samples" / "event.yaml")]
    assert main(argv, stdout=out) == 0
    assert "Subject: Welcome, Ada!" in out.getvalue()


def test_the_scaffold_workflow_passes_actionlint(team: GitRepo, tmp_path: Path) -> None:
    pinned = tmp_path / "pinned"
    code, _ = _init(str(pinned), "--postwright-repo", "https://github.com/acme/postwright")
    assert code == 0
    for root in (team.path, pinned):
        workflow = root / ".github" / "workflows" / "postwright.yml"
        done = subprocess.run(
            [str(VENV_BIN / "actionlint"), str(workflow)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def _pre_commit(team: GitRepo, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "PATH": os.environ["PATH"]}
    return subprocess.run(
        [str(VENV_BIN / "pre-commit"), "run", "--all-files", "--color", "never"],
        cwd=team.path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=400,
    )


def test_the_scaffold_pre_commit_config_runs_the_hooks(team: GitRepo, tmp_path: Path) -> None:
    config = yaml.safe_load((team.path / ".pre-commit-config.yaml").read_text())
    assert Path(config["repos"][0]["repo"]) == ROOT  # this checkout, at its HEAD commit
    home = tmp_path / "pre-commit-home"
    done = _pre_commit(team, home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"postwright validate\.+Passed", done.stdout), done.stdout
    # The hook really checks: a broken automation fails it.
    team.write("automations/welcome.yaml", "id: welcome\nstatus: draft\n")
    done = _pre_commit(team, home)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"postwright validate\.+Failed", done.stdout), done.stdout
    assert "automations/welcome.yaml" in done.stdout
