"""The reactor's database links: a connection the server ended is replaced on the next call."""

from __future__ import annotations

import pytest

from reactor.errors import DatabaseUnavailable
from reactor.process.link import Link

NAME = "ps-health-test:link"


def _backends(conn) -> list[int]:
    return [r["pid"] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                                           "AND datname = current_database()", (NAME,))]


def test_a_call_on_a_connection_the_server_ended_reconnects_at_once(conn, db):
    link = Link(db, NAME)
    try:
        link.call("ping")
        [first] = _backends(conn)
        assert conn.execute("SELECT pg_terminate_backend(%s, 5000) AS ok", (first,)).fetchone()["ok"]
        # The database is up: the call must not report an outage, which would cost the reactor a
        # whole backoff step (up to 30 s) before it tries again.
        assert link.call("ping") == [{"ok": 1}]
        assert _backends(conn) not in ([], [first])
    finally:
        link.close()


def test_a_call_while_the_database_is_unreachable_is_an_outage(db):
    link = Link(db.replace("dbname=", "dbname=no_such_database_"), NAME)
    with pytest.raises(DatabaseUnavailable):
        link.call("ping")
    link.close()
