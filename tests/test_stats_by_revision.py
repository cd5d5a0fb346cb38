"""Stats by revision through real reloads of a git repository: each message counts for the
revision that rendered it, named by its commit and the commit's subject line, read from the
store (git never runs when stats are asked for)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.test_reload import DAY, Runner, path, scenario, text


def test_each_revision_is_named_by_its_commit_and_subject(tmp_path: Path) -> None:
    async def body(r: Runner) -> None:
        reloader = await r.start()
        await reloader.reload()
        first = r.repo.head()
        await r.purchase("ann@example.com")
        await r.later(DAY + timedelta(hours=1))
        # A running automation's subject changes through a pause (docs/rules.md).
        r.repo.write(path("promo"), text("promo", "paused"))
        r.repo.commit("Pause the promo")
        r.repo.write(path("promo"), text("promo", subject="Shorter"))
        second = r.repo.commit("Shorter subject line")
        await reloader.reload()
        await r.purchase("bob@example.com")
        await r.purchase("cat@example.com")
        await r.later(DAY + timedelta(hours=1))
        assert await r.subjects("promo") == [
            ("ann@example.com", "Old"),
            ("bob@example.com", "Shorter"),
            ("cat@example.com", "Shorter"),
        ]
        found = await r.read(lambda tx: tx.stats_by_revision("promo"))
        assert [(s.revision, s.commit, s.subject, s.counts.sent) for s in found] == [
            (1, first, "initial", 1),
            (3, second, "Shorter subject line", 2),
        ]

    scenario(tmp_path, {"promo": text("promo")}, body)
