"""`fan_out_page` written once for both stores: the page's test, the pending send's columns
as SQL over the page's rows, the ids; each store runs them its own way (`_enter_page`)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from runner.core.prefilter import Prefilter
from runner.core.records import PendingSend
from runner.store.fanout import FanOutPage, SweepRow
from runner.store.rows import SEND_COLUMNS
from runner.store.sql_read import SqlReadTx

# A field's JSON text holding an escaped NUL: such a row is left to the runner to check.
HELD = "'\\u0000'"
# The varying columns of a firing's send, read from the page (`id`, `email`).
_FROM_PAGE = {"subscriber_id": "page.id", "email": "page.email"}
_ID_COLUMNS = frozenset({"id", "series_id"})  # a new series' first send is its own series
# The entries of a page: as `record_entries`, a subscriber entered before counts once more.
ENTRIES = (
    "INSERT INTO entries (automation_id, subscriber_id, first_at, last_at, count)"
    " SELECT {mark}, page.id, {mark}, {mark}, 1 FROM {page} AS page WHERE {fresh}"
    " ON CONFLICT (automation_id, subscriber_id)"
    " DO UPDATE SET last_at = excluded.last_at, count = entries.count + 1"
)
# The sends of a page (`{columns}`: the send's columns as SQL over the page's rows).
SENDS = (
    f"INSERT INTO pending_sends ({SEND_COLUMNS})"
    " SELECT {columns} FROM {page} AS page WHERE {fresh} ON CONFLICT (id) DO NOTHING"
)


class SqlFanOutTx(SqlReadTx):
    """A firing's page chosen and entered by the store's statements."""

    # SQL making a send's id from two bound integers (milliseconds, random start) and
    # `page.id`: twelve then sixteen hex digits, as `new_ids` in runner/engine/context.py.
    send_id_sql: str
    position: str  # the function giving where text is found in text (0: not found)

    def fan_out_page(
        self,
        template: PendingSend,
        after_id: int,
        until_id: int,
        limit: int,
        tests: Sequence[Prefilter],
    ) -> FanOutPage:
        """The page `sweep_rows` would read, entered in the store (see runner.store.fanout)."""
        if template.series_id != template.id:
            raise ValueError("fan_out_page() takes the first send of a new series")
        where, where_args = self._sweep_where(after_id, until_id, tests)
        # Ids sort by the firing's time, then a random start plus the subscriber's id: a
        # page's sends land side by side in the id index, and the sum stays a positive
        # 64-bit integer in both databases.
        millis = int(template.trigger_at.timestamp() * 1000)
        start = secrets.randbelow(2**63 - max(until_id, 0))
        mark = self.dialect.positional
        names = [name.strip() for name in SEND_COLUMNS.split(",")]
        selected: list[str] = []
        send_args: list[object] = []
        for name, value in zip(names, self.dialect.codec.send_values(template), strict=True):
            if name in _ID_COLUMNS:
                selected.append(self.send_id_sql)
                send_args.extend([millis, start])
            elif name in _FROM_PAGE:
                selected.append(_FROM_PAGE[name])
            elif value is None:
                selected.append("NULL")
            else:
                selected.append(mark)
                send_args.append(value)
        when = self.dialect.write_time(template.trigger_at)
        count, last_id, held = self._enter_page(
            where,
            [*where_args, limit],
            ", ".join(selected),
            send_args,
            [template.automation_id, when, when],
        )
        if not held or last_id is None:
            return FanOutPage(count, last_id)
        return FanOutPage(count, last_id, self._held_rows(after_id, last_id, tests))

    def _enter_page(
        self,
        where: str,
        where_args: list[object],
        send_sql: str,
        send_args: list[object],
        entry_args: list[object],
    ) -> tuple[int, int | None, int]:
        """Choose the page (`SELECT ... FROM subscribers WHERE {where} ORDER BY id LIMIT ?`
        over `where_args`, the limit last), then, for its rows whose fields hold no `HELD`,
        insert the entries (automation, first and last time in `entry_args`) and the sends
        (`INSERT INTO pending_sends (SEND_COLUMNS) SELECT {send_sql} FROM page`). Returns the
        page's size, its last id and how many rows it held back."""
        raise NotImplementedError

    def _held_rows(self, after_id: int, last_id: int, tests: Sequence[Prefilter]) -> list[SweepRow]:
        where, args = self._sweep_where(after_id, last_id, tests)
        found = self._all(
            f"SELECT id, email, fields, groups FROM subscribers WHERE {where}"
            f" AND {self.position}(subscribers.fields, {HELD}) > 0 ORDER BY id",
            *args,
        )
        return [(r["id"], r["email"], r["fields"], r["groups"]) for r in found]
