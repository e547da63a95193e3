"""Where the shipped SQL and documents are, and the named queries of sql/queries/*.sql (Python refers
to SQL by name only)."""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
from pathlib import Path

# The SQL, the pg_cron jobs and the PS instructions ship inside the package (reactor/sql, pg_cron and
# docs are links to the top-level folders in a checkout, copies in a wheel): found the same way from
# a checkout, an editable install or a regular one, from any folder.
PACKAGE_DIR = Path(str(importlib.resources.files("reactor")))
SQL_DIR = Path(os.environ.get("PS_HEALTH_SQL_DIR") or PACKAGE_DIR / "sql")
PG_CRON_DIR = PACKAGE_DIR / "pg_cron"
DOCS_DIR = PACKAGE_DIR / "docs"

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@functools.cache
def queries(topic: str) -> dict[str, str]:
    """Return name -> SQL text for sql/queries/<topic>.sql (each query headed by `-- name: x`)."""
    text = (SQL_DIR / "queries" / f"{topic}.sql").read_text()
    parts = _HEADER.split(text)
    found = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        found[name] = body.strip().rstrip(";")
    return found


def query(topic: str, name: str) -> str:
    """One named query; KeyError names the file and query when it is missing."""
    try:
        return queries(topic)[name]
    except KeyError:
        raise KeyError(f"no query {name!r} in sql/queries/{topic}.sql") from None
