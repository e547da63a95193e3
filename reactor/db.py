"""Connections and calls: every database error leaves here as a PsHealthError."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.rows import dict_row

from reactor import errors
from reactor.sqlfiles import query


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    """Translate psycopg exceptions raised inside the block."""
    try:
        yield
    except psycopg.Error as exc:
        raise errors.from_psycopg(exc) from exc


def connect(dsn: str, *, autocommit: bool = False, application_name: str = "ps-health",
            connect_timeout: int = 5) -> psycopg.Connection:
    """Open a connection with dict rows and search_path set to ps_health."""
    with mapped_errors():
        return psycopg.connect(
            dsn, autocommit=autocommit, row_factory=dict_row,
            application_name=application_name, connect_timeout=connect_timeout,
            options="-c search_path=ps_health,public",
        )


def fetch(conn: psycopg.Connection, topic: str, name: str, params: Any = None) -> list[dict]:
    """Run a named query and return all rows (commits when the connection is not autocommit)."""
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
