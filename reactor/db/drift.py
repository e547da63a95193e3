"""Schema comparison with migra, and throw-away databases to compare against."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from reactor import db
from reactor.db.queries import query

SCHEMA = "ps_health"


def sqlalchemy_url(dsn: str) -> str:
    """Turn a libpq conninfo into the SQLAlchemy URL migra needs (psycopg 3 driver)."""
    info = conninfo_to_dict(dsn)
    env = os.environ
    user = info.get("user") or env.get("PGUSER") or ""
    password = info.get("password") or env.get("PGPASSWORD")
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    params = []
    for key, env_key in (("host", "PGHOST"), ("port", "PGPORT"), ("sslmode", "PGSSLMODE")):
        value = info.get(key) or env.get(env_key)
        if value:
            params.append(f"{key}={quote(str(value), safe='')}")
    dbname = info.get("dbname") or env.get("PGDATABASE") or user
    return f"postgresql+psycopg://{auth}@/{quote(dbname, safe='')}" + ("?" + "&".join(params) if params else "")


def diff(dsn_from: str, dsn_to: str, schema: str = SCHEMA) -> str:
    """SQL that turns the schema in dsn_from into the one in dsn_to ('' when equal)."""
    from migra import Migration  # heavy import, only when a diff is asked for
    from sqlbag import S

    with S(sqlalchemy_url(dsn_from)) as s_from, S(sqlalchemy_url(dsn_to)) as s_to:
        migration = Migration(s_from, s_to, schema=schema)
        migration.set_safety(False)
        migration.add_all_changes()
        return migration.sql.strip()


@contextlib.contextmanager
def scratch_database(dsn: str, prefix: str = "ps_health_scratch") -> Iterator[str]:
    """A throw-away database on the same server as dsn; yields its conninfo, drops it after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier(name)
    with db.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(query("migrate", "create_database")).format(name=ident))
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with db.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL(query("migrate", "drop_database")).format(name=ident))

