"""Connections and calls: every database error leaves here as a PsHealthError."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from reactor import errors
from reactor.db.queries import query

log = logging.getLogger(__name__)

# A deadlock or serialization failure aborts only the losing call; run it again a few times.
RETRY_STATES = ("40P01", "40001")
RETRIES = 3


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    """Translate psycopg exceptions raised inside the block."""
    try:
        yield
    except psycopg.Error as exc:
        raise errors.from_psycopg(exc) from exc
    except UnicodeEncodeError as exc:  # a value with bytes that are not UTF-8 cannot be sent
        bad = exc.object[exc.start:exc.end].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise errors.BadInput(f"a value is not valid UTF-8 (it has {bad})") from exc


def connect(dsn: str, *, autocommit: bool = False, application_name: str = "ps-health",
            connect_timeout: int = 5, dict_rows: bool = True, lock_timeout: str | None = None) -> psycopg.Connection:
    """The one way ps-health opens a connection: search_path set to ps_health, rows as dicts (or tuples),
    every failure mapped to a PsHealthError (DatabaseUnavailable when the server is out of reach).
    lock_timeout: how long a statement waits for a lock before it fails with Busy (default: the server's)."""
    options = "-c search_path=ps_health,public" + (f" -c lock_timeout={lock_timeout}" if lock_timeout else "")
    with mapped_errors():
        return psycopg.connect(
            dsn, autocommit=autocommit, row_factory=dict_row if dict_rows else tuple_row,
            application_name=application_name, connect_timeout=connect_timeout, options=options,
        )


def _without_nul(value: Any) -> Any:
    """Drop NUL from every string sent: PostgreSQL text cannot hold it (the database judges the rest)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_nul(v) for v in value)
    return value


def fetch(conn: psycopg.Connection, topic: str, name: str, params: Any = None) -> list[dict]:
    """Run a named query and return all rows (commits when the connection is not autocommit).

    A call that loses a deadlock or a serialization conflict is run again, when it was its own
    transaction, up to RETRIES times.
    """
    params = _without_nul(params)
    own = conn.autocommit or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    attempt = 0
    while True:
        try:
            return _fetch_once(conn, topic, name, params)
        except errors.PsHealthError as exc:
            attempt += 1
            if exc.sqlstate not in RETRY_STATES or not own or attempt > RETRIES:
                raise
            log.warning("%s.%s: %s [%s]; running it again (%d of %d)", topic, name, exc, exc.sqlstate,
                        attempt, RETRIES)
            time.sleep(random.uniform(0.01, 0.05) * attempt)


def _fetch_once(conn: psycopg.Connection, topic: str, name: str, params: Any) -> list[dict]:
    with mapped_errors():
        try:
            cur = conn.execute(query(topic, name), params)
            rows = cur.fetchall() if cur.description else []
            if not conn.autocommit:
                conn.commit()
            return rows
        except BaseException:
            if not conn.autocommit and not conn.closed:
                conn.rollback()
            raise


def fetch_one(conn: psycopg.Connection, topic: str, name: str, params: Any = None) -> dict | None:
    """Run a named query and return its first row or None."""
    rows = fetch(conn, topic, name, params)
    return rows[0] if rows else None
