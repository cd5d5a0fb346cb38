"""Push-to-applied latency of `serve --git`: with a signed webhook, and with polling every
second, next to a baseline measured in the same run: the local file watcher (`serve --repo`)
reacting to the same kind of commit made in its own checkout.

Each round commits one new automation file; the time runs from the moment `git push` (or,
for the baseline, `git commit`) returned to the moment `GET /v1/automations/{id}` answers
200 (the webhook's request is inside the timed part). Polling rounds push at a random moment
of the 1 s cycle, as real pushes do. The remote is a bare repository served by `git daemon`
on 127.0.0.1. Loopback only, bounded (about a minute with the defaults).

    .venv/bin/python benchmarks/git_follow.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.gitops.git_webhook import github_signature
from tests.fakes.git_servers import bare_repository, git_daemon
from tests.gitfollow import Upstream, automation, serve_git
from tests.gitrepo import GitRepo
from tests.serving import serve, wait_for

SECRET = "benchmark-secret"
APPLY_WAIT = 30.0


def summary(name: str, seconds: list[float], baseline: float | None) -> str:
    """One line: median and p95 in ms, and the ratio of medians to the baseline."""
    ordered = sorted(seconds)
    median = statistics.median(ordered)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    ratio = "" if baseline is None else f"  ({median / baseline:.1f}x the watcher)"
    return f"{name:<28} median {median * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms{ratio}"


def rounds(
    count: int,
    prefix: str,
    change: Callable[[str], None],
    applied: Callable[[str], bool],
    then: Callable[[], None] = lambda: None,
) -> list[float]:
    """`count` rounds: a change adding automation `<prefix><n>` (untimed), then `then` (timed:
    the webhook) and the wait until the automation is applied."""
    found = []
    for number in range(count):
        ident = f"{prefix}{number}"
        change(ident)
        started = time.monotonic()
        then()
        wait_for(functools.partial(applied, ident), f"{ident} applied", APPLY_WAIT)
        found.append(time.monotonic() - started)
    return found


@contextmanager
def watcher(repo: Path) -> Iterator[httpx.Client]:
    """`serve --repo` on a local checkout (the file watcher), once ready."""
    environ = {"POSTWRIGHT_DATABASE_URL": f"sqlite:///{repo.parent / 'watcher.db'}"}
    log = repo.parent / "watcher.log"
    with (
        serve(["--repo", str(repo)], log, environ=environ, wait=APPLY_WAIT) as served,
        httpx.Client(base_url=served.url, timeout=10) as client,
    ):
        yield client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    count = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="pw-git-bench-") as folder:
        tmp = Path(folder)
        local = GitRepo(tmp / "local")
        local.write("automations/hello.yaml", automation("hello"))
        local.commit("hello")
        with watcher(local.path) as client:

            def commit_locally(ident: str) -> None:
                local.write(f"automations/{ident}.yaml", automation(ident))
                local.commit(ident)

            def on_watcher(ident: str) -> bool:
                return client.get(f"/v1/automations/{ident}").status_code == 200

            base = rounds(count, "w", commit_locally, on_watcher)

        bare = bare_repository(tmp / "remotes")
        upstream = Upstream(tmp / "upstream", bare)
        upstream.save("hello", automation("hello"), "hello")
        upstream.push()
        environ = {"POSTWRIGHT_GIT_WEBHOOK_SECRET": SECRET}
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": github_signature(SECRET, body),
        }
        with git_daemon(tmp / "remotes") as daemon:
            url = f"{daemon}/automations.git"
            with serve_git(url, tmp / "hook", "--interval", "1h", environ=environ) as run:

                def push(ident: str) -> None:
                    upstream.save(ident, automation(ident), ident)
                    upstream.push()

                def notify() -> None:
                    answer = run.http.post("/v1/git/webhook", content=body, headers=headers)
                    assert answer.status_code == 202, answer.text

                hook = rounds(count, "h", push, lambda i: run.automation(i) is not None, notify)
            with serve_git(url, tmp / "poll", "--interval", "1s") as polling:

                def push_any_time(ident: str) -> None:
                    # Real pushes come at any moment of the poll cycle; right after an apply
                    # they would all land at its start (a full interval to wait).
                    time.sleep(random.uniform(0.0, 1.0))
                    push(ident)

                polled = rounds(
                    count, "p", push_any_time, lambda i: polling.automation(i) is not None
                )
    reference = statistics.median(base)
    print(f"push-to-applied latency, {count} rounds each")
    print(summary("baseline: local watcher", base, None))
    print(summary("serve --git + webhook", hook, reference))
    print(summary("serve --git, 1 s polling", polled, reference))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
